//! The event ID index's entries of settled messages, as rows of the page
//! store ([`Table::IdBuckets`]).
//!
//! Every event has an entry in the ID index (`hash << 32 | index`, 8 bytes:
//! 7.6 MiB at Matrix HQ's million events). The entries the room looks up
//! all the time stay in memory ([`super::id_index`]): state events' (the
//! auth events every PDU lists) and those of events not settled yet (the
//! prev events of the next PDUs). The rest, settled messages, are looked up
//! rarely (`/event`, `/state_ids?event_id=`, a redaction's target, an old
//! prev event), so they are kept here:
//!
//! 1. **Buckets.** The entries are cut by the top `bits` bits of their
//!    hash into `2^bits` buckets, each a row of sorted entries (a bucket
//!    with none has no row). A row is named by a hash of its bytes, like the
//!    rows of IDs and of blocks: never overwritten with other content, so
//!    an image names rows that stay right.
//! 2. **Merges.** Entries move here in batches, once the settled messages
//!    still in memory reach an eighth of those here ([`IdBuckets::merge`]):
//!    every bucket is read, merged with its new entries and written again,
//!    split in two when the buckets hold more than [`BUCKET_ENTRIES`] on
//!    average (rows of ~8 KiB). Over a room's life that writes about nine
//!    times the entries, as merging a sorted array in memory copies it.
//!    A merge whose row fails to write changes nothing.
//! 3. **A Bloom filter.** Every PDU received is looked up first (is it
//!    stored already?), and nearly all are not: a filter of the entries here
//!    ([`BLOOM_BITS`] bits an entry, [`BLOOM_HASHES`] hashes: ~2 % false
//!    positives) answers "not here" without reading a row. It is rebuilt by
//!    each merge as the buckets stream through, and written in the image.
//!
//! 4. **Rows retired.** The rows a merge replaces are named by the room's
//!    last image until the next one is committed, so they are kept until
//!    then and deleted after it ([`IdBuckets::sweep`]), not at the merge: a
//!    room restored or rebuilt beside the one it replaces (a store shared
//!    for a while) may write rows of the same content, and it writes an
//!    image only once it has replaced the other.
//!
//! In memory: the filter (a byte an entry) and 20 bytes a bucket (its row's
//! key and length), instead of 8 bytes an entry.

use std::sync::Arc;

use super::id_index::merge_sorted;
use crate::event::{row_key, row_key_text};
use crate::ids::EventIdx;
use crate::image::{ImageError, Reader, Writer};
use crate::pages::{PageCache, PageError, Table};

/// Entries a bucket holds on average at most: the buckets double past it
/// (rows of 8 KiB).
pub(super) const BUCKET_ENTRIES: usize = 1024;
/// Bits of the Bloom filter an entry.
const BLOOM_BITS: usize = 8;
/// Positions an entry sets in the Bloom filter (the best count for 8 bits
/// an entry is 5.5: ~2.2 % false positives).
const BLOOM_HASHES: u64 = 5;
/// At most `2^MAX_BITS` buckets (4 billion entries at `BUCKET_ENTRIES`).
const MAX_BITS: u32 = 22;
/// Keys of retired rows kept for the next sweep at most (a room that
/// writes no image leaves the rest in the store).
const MAX_RETIRED: usize = 1 << 16;

/// The paged entries of the ID index.
#[derive(Debug, Default)]
pub(super) struct IdBuckets {
    /// log2 of the bucket count.
    bits: u32,
    /// Each bucket's row (none before the first merge, else `2^bits`).
    rows: Vec<Bucket>,
    /// Entries in the buckets.
    len: usize,
    /// The settled events considered by the last merge: those before it
    /// that are not state events are here.
    upto: u32,
    /// The Bloom filter of the entries' hashes.
    bloom: Box<[u64]>,
    /// Rows replaced by merges since the last sweep (deleted by the next).
    retired: Vec<[u8; 16]>,
}

/// A bucket's row: its key (a hash of its bytes) and its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    key: [u8; 16],
    len: u32,
}

/// The bucket of hash `h` among `2^bits`.
fn bucket_of(h: u32, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (h >> (32 - bits)) as usize
    }
}

fn hash_of(entry: u64) -> u32 {
    (entry >> 32) as u32
}

/// 64-bit words of the Bloom filter for `len` entries.
fn bloom_words(len: usize) -> usize {
    (len * BLOOM_BITS).div_ceil(64).max(1)
}

/// The filter's bits for hash `h` among `m`: double hashing of a 64-bit
/// mix of `h` (the bucket is `h`'s top bits; the mix spreads every bit).
fn bloom_positions(h: u32, m: u64) -> impl Iterator<Item = usize> {
    let mut g = u64::from(h).wrapping_add(0x9E37_79B9_7F4A_7C15);
    g = (g ^ (g >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    g = (g ^ (g >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    g ^= g >> 31;
    let (a, b) = (g & 0xFFFF_FFFF, (g >> 32) | 1);
    (0..BLOOM_HASHES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % m) as usize)
}

fn bloom_insert(bloom: &mut [u64], h: u32) {
    let m = bloom.len() as u64 * 64;
    for p in bloom_positions(h, m) {
        bloom[p / 64] |= 1 << (p % 64);
    }
}

/// A bucket's entries as the bytes of its row (little-endian words).
fn row_bytes(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Entry `k` of a row.
fn entry_at(row: &[u8], k: usize) -> u64 {
    u64::from_le_bytes(row[8 * k..8 * k + 8].try_into().expect("8 bytes"))
}

impl IdBuckets {
    /// Entries in the buckets.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The settled events the last merge considered (see the field).
    pub(super) fn upto(&self) -> usize {
        self.upto as usize
    }

    /// Buckets (rows) and the Bloom filter's bytes, for tests and benches.
    pub(super) fn footprint(&self) -> (usize, usize) {
        (self.rows.len(), self.bloom.len() * 8)
    }

    /// Whether an entry of hash `h` may be here (no row read: the Bloom
    /// filter's "no" is certain).
    pub(super) fn may_hold(&self, h: u32) -> bool {
        if self.len == 0 {
            return false;
        }
        let m = self.bloom.len() as u64 * 64;
        bloom_positions(h, m).all(|p| self.bloom[p / 64] & 1 << (p % 64) != 0)
    }

    /// The events of the entries of hash `h` (most often none or one),
    /// reading `h`'s bucket through the page cache when the filter says it
    /// may be there.
    ///
    /// # Errors
    /// The bucket's row could not be read back, or is not the row written.
    pub(super) fn of_hash(&self, h: u32, pages: Option<&PageCache>) -> Result<Vec<EventIdx>, PageError> {
        if !self.may_hold(h) {
            return Ok(Vec::new());
        }
        let b = bucket_of(h, self.bits);
        let Bucket { key, len } = self.rows[b];
        if len == 0 {
            return Ok(Vec::new());
        }
        let Some(pages) = pages else {
            return Err(PageError::Missing { table: Table::IdBuckets, key: row_key_text(&key) });
        };
        let row: Arc<[u8]> = pages.get_bytes(
            Table::IdBuckets,
            b as u32,
            || row_key_text(&key),
            |row| row.len() == 8 * len as usize && row_key(row) == key,
        )?;
        let lo = u64::from(h) << 32;
        let n = len as usize;
        let (mut at, mut end) = (0, n);
        while at < end {
            let mid = (at + end) / 2;
            if entry_at(&row, mid) < lo {
                at = mid + 1;
            } else {
                end = mid;
            }
        }
        Ok((at..n).map(|k| entry_at(&row, k)).take_while(|x| hash_of(*x) == h).map(|x| EventIdx(x as u32)).collect())
    }

    /// Moves `new` (sorted entries, none here yet) into the buckets, the
    /// settled events before `upto` now considered: each bucket is read
    /// straight from the store (not through the cache, which a merge would
    /// empty), merged with its new entries, split when the buckets double,
    /// and written; the Bloom filter is rebuilt as they go.
    ///
    /// # Errors
    /// A row could not be read or written: the buckets are as before (the
    /// rows written meanwhile are named by no one).
    pub(super) fn merge(&mut self, new: &[u64], upto: u32, pages: &mut PageCache) -> Result<(), PageError> {
        debug_assert!(new.windows(2).all(|w| w[0] < w[1]), "sorted, each once");
        let len = self.len + new.len();
        let mut bits = self.bits;
        while bits < MAX_BITS && len > BUCKET_ENTRIES << bits {
            bits += 1;
        }
        let split = bits - self.bits;
        let mut rows = Vec::with_capacity(1 << bits);
        let mut bloom = vec![0u64; bloom_words(len)].into_boxed_slice();
        let mut at = 0;
        let mut merged = Vec::new();
        // Before the first merge, one empty bucket of every hash.
        for b in 0..self.rows.len().max(1) {
            let old = match self.rows.get(b) {
                Some(bucket) if bucket.len > 0 => read_row(pages, *bucket)?,
                _ => Vec::new(),
            };
            let end = at + new[at..].partition_point(|x| bucket_of(hash_of(*x), self.bits) <= b);
            merged.clear();
            merged.reserve(old.len() + end - at);
            merge_sorted(&old, &new[at..end], &mut merged);
            at = end;
            let mut start = 0;
            for s in 0..1usize << split {
                let nb = b << split | s;
                let stop = start + merged[start..].partition_point(|x| bucket_of(hash_of(*x), bits) <= nb);
                let part = &merged[start..stop];
                rows.push(write_row(pages, part)?);
                part.iter().for_each(|x| bloom_insert(&mut bloom, hash_of(*x)));
                start = stop;
            }
        }
        debug_assert_eq!(at, new.len(), "every new entry in a bucket");
        pages.forget_table(Table::IdBuckets);
        let kept: std::collections::HashSet<[u8; 16]> = rows.iter().map(|b| b.key).collect();
        let mut retired = std::mem::take(&mut self.retired);
        let replaced = self.rows.iter().filter(|b| b.len > 0 && !kept.contains(&b.key)).map(|b| b.key);
        retired.extend(replaced.take(MAX_RETIRED.saturating_sub(retired.len())));
        *self = Self { bits, rows, len, upto, bloom, retired };
        Ok(())
    }

    /// Deletes the rows merges replaced, once an image naming the buckets
    /// as they are now is committed (no image that may be read names the
    /// others). A row that fails to delete stays in the store, unnamed.
    pub(super) fn sweep(&mut self, store: &mut dyn crate::pages::PageStore) {
        let kept: std::collections::HashSet<[u8; 16]> = self.rows.iter().map(|b| b.key).collect();
        let mut gone = std::collections::HashSet::new();
        for key in std::mem::take(&mut self.retired) {
            if !kept.contains(&key) && gone.insert(key) {
                let _ = store.delete(Table::IdBuckets, &row_key_text(&key));
            }
        }
    }

    /// The keys of the buckets' rows.
    pub(super) fn named_rows(&self) -> Vec<[u8; 16]> {
        self.rows.iter().filter(|b| b.len > 0).map(|b| b.key).collect()
    }

    /// Writes the buckets' keys and lengths and the Bloom filter (the rows
    /// are the page store's).
    pub(super) fn write_image(&self, w: &mut Writer<'_>) {
        w.u32(self.bits);
        w.u32(self.upto);
        w.len(self.rows.len());
        for b in &self.rows {
            w.raw(&b.key);
            w.u32(b.len);
        }
        w.u64s(&self.bloom);
    }

    /// Reads what [`write_image`](Self::write_image) wrote, for a room of
    /// `events` events.
    pub(super) fn read_image(r: &mut Reader<'_>, events: usize) -> Result<Self, ImageError> {
        let corrupt = |what: &str| ImageError::Corrupt(format!("the ID index's buckets: {what}"));
        let bits = r.u32()?;
        let upto = r.u32()?;
        if bits > MAX_BITS || upto as usize > events {
            return Err(corrupt("out of range"));
        }
        let n = r.len(20)?;
        if n != 0 && n != 1 << bits || n == 0 && bits != 0 {
            return Err(corrupt("not a power of two"));
        }
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let key: [u8; 16] = r.take(16)?.try_into().expect("16 bytes");
            rows.push(Bucket { key, len: r.u32()? });
        }
        let len: usize = rows.iter().map(|b| b.len as usize).sum();
        let mut bloom = Vec::new();
        r.u64s_into(&mut bloom)?;
        if len > events || bloom.len() != if n == 0 { 0 } else { bloom_words(len) } {
            return Err(corrupt("their lengths do not add up"));
        }
        Ok(Self { bits, rows, len, upto, bloom: bloom.into_boxed_slice(), retired: Vec::new() })
    }
}

/// A bucket's entries, read from the store itself.
fn read_row(pages: &PageCache, b: Bucket) -> Result<Vec<u64>, PageError> {
    let key = row_key_text(&b.key);
    let row = pages.store().get(Table::IdBuckets, &key)?;
    let row = row.ok_or_else(|| PageError::Missing { table: Table::IdBuckets, key: key.clone() })?;
    if row.len() != 8 * b.len as usize || row_key(&row) != b.key {
        return Err(PageError::Corrupt { table: Table::IdBuckets, key });
    }
    Ok((0..b.len as usize).map(|k| entry_at(&row, k)).collect())
}

/// Writes a bucket's row (none for no entries).
fn write_row(pages: &mut PageCache, entries: &[u64]) -> Result<Bucket, PageError> {
    if entries.is_empty() {
        return Ok(Bucket { key: [0; 16], len: 0 });
    }
    let bytes = row_bytes(entries);
    let key = row_key(&bytes);
    pages.put_row(Table::IdBuckets, &row_key_text(&key), &bytes)?;
    Ok(Bucket { key, len: entries.len() as u32 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::testing::{fixture, Fixture};
    use crate::pages::PageStore;

    /// Entries of events `from..to` with scattered hashes (one in 97 sharing
    /// the one before's).
    fn entries(from: u32, to: u32) -> Vec<u64> {
        let hash = |i: u32| if i % 97 == 0 { i.saturating_sub(1) } else { i }.wrapping_mul(2_654_435_761);
        let mut v: Vec<u64> = (from..to).map(|i| u64::from(hash(i)) << 32 | u64::from(i)).collect();
        v.sort_unstable();
        v
    }

    fn found(buckets: &IdBuckets, pages: &PageCache, all: &[u64]) {
        for x in all {
            let got = buckets.of_hash(hash_of(*x), Some(pages)).unwrap();
            assert!(got.contains(&EventIdx(*x as u32)), "{x:x}");
            assert!(got.iter().all(|i| all.binary_search(&(u64::from(hash_of(*x)) << 32 | u64::from(i.0))).is_ok()));
        }
    }

    /// Merged into again and again, the buckets double as they fill, every
    /// entry is found and no other; the filter never says no to an entry
    /// and says yes to few others; the rows are ~8 KiB.
    #[test]
    fn buckets_grow_and_find_every_entry() {
        let mut f = fixture();
        let mut buckets = IdBuckets::default();
        let mut all = Vec::new();
        let mut at = 0;
        for step in [3000, 500, 4000, 10_000, 20_000] {
            let new = entries(at, at + step);
            buckets.merge(&new, at + step, &mut f.pages).unwrap();
            all.extend_from_slice(&new);
            all.sort_unstable();
            at += step;
            assert_eq!(buckets.len(), all.len());
            assert_eq!(buckets.upto(), at as usize);
            assert!(buckets.len() <= BUCKET_ENTRIES << buckets.bits, "{} buckets", buckets.rows.len());
            assert!(buckets.bits == 0 || buckets.len() > BUCKET_ENTRIES << (buckets.bits - 1));
            found(&buckets, &f.pages, &all);
        }
        assert_eq!(buckets.rows.len(), 64, "37,500 entries in buckets of at most 1,024 on average");
        // A row is the bucket's entries, sorted, all of its hashes.
        for (b, bucket) in buckets.rows.iter().enumerate() {
            let row = read_row(&f.pages, *bucket).unwrap();
            assert!(row.windows(2).all(|w| w[0] < w[1]) && row.iter().all(|x| bucket_of(hash_of(*x), 6) == b));
        }
        // Hashes that are not there: the filter spares nearly every read.
        let reads = f.reads.get();
        let absent = (0u32..100_000)
            .map(|k| k.wrapping_mul(0x9E37_79B9) ^ 0x5555_5555)
            .filter(|h| all.binary_search_by(|x| hash_of(*x).cmp(h)).is_err());
        let (mut asked, mut maybe) = (0, 0);
        for h in absent {
            asked += 1;
            maybe += usize::from(buckets.may_hold(h));
            assert!(buckets.of_hash(h, Some(&f.pages)).unwrap().is_empty());
        }
        assert!(maybe * 100 < asked * 4, "{maybe} of {asked} absent hashes pass the filter");
        assert!(f.reads.get() - reads <= maybe, "a row read only past the filter");
        // The rows merges replaced are kept until a sweep, then deleted;
        // the buckets' own rows stay.
        let stored = |f: &Fixture| {
            let mut keys: Vec<String> = f.rows.borrow().rows_of(Table::IdBuckets).into_iter().map(|(k, _)| k).collect();
            keys.sort();
            keys
        };
        let mut named: Vec<String> = buckets.rows.iter().map(|b| row_key_text(&b.key)).collect();
        named.sort();
        assert!(stored(&f).len() > named.len() && named.iter().all(|k| stored(&f).contains(k)));
        buckets.sweep(&mut *f.pages.store_mut());
        assert_eq!(stored(&f), named);
        found(&buckets, &f.pages, &all);
    }

    /// A merge whose write fails leaves the buckets as they were; so does one
    /// whose old row is missing; a row that is not the one written is a
    /// typed error when read.
    #[test]
    fn a_failed_merge_changes_nothing_and_a_damaged_row_is_an_error() {
        let mut f = fixture();
        let mut buckets = IdBuckets::default();
        let first = entries(0, 5000);
        buckets.merge(&first, 5000, &mut f.pages).unwrap();
        let before = (buckets.rows.clone(), buckets.len(), buckets.bloom.clone());
        for fail_at in [0, 3] {
            f.fail_from.set(fail_at);
            let e = buckets.merge(&entries(5000, 6000), 6000, &mut f.pages).unwrap_err();
            assert_eq!(e, PageError::Backend("full".into()));
            assert_eq!((buckets.rows.clone(), buckets.len(), buckets.bloom.clone()), before);
            assert_eq!(buckets.upto(), 5000);
            found(&buckets, &f.pages, &first);
        }
        f.fail_from.set(usize::MAX);
        // Damage every row: each lookup past the filter is Corrupt.
        let rows = f.rows.borrow().rows_of(Table::IdBuckets);
        for (key, mut row) in rows {
            row[3] ^= 1;
            f.rows.borrow_mut().put(Table::IdBuckets, &key, &row).unwrap();
        }
        f.pages.forget_table(Table::IdBuckets);
        let e = buckets.of_hash(hash_of(first[7]), Some(&f.pages)).unwrap_err();
        assert!(matches!(e, PageError::Corrupt { table: Table::IdBuckets, .. }), "{e:?}");
        let e = buckets.merge(&entries(5000, 6000), 6000, &mut f.pages).unwrap_err();
        assert!(matches!(e, PageError::Corrupt { table: Table::IdBuckets, .. }), "{e:?}");
        assert_eq!(buckets.rows, before.0);
        // A missing row likewise.
        let keys: Vec<String> = f.rows.borrow().rows_of(Table::IdBuckets).into_iter().map(|(k, _)| k).collect();
        keys.iter().for_each(|k| f.rows.borrow_mut().delete(Table::IdBuckets, k).unwrap());
        f.pages.forget_table(Table::IdBuckets);
        let e = buckets.of_hash(hash_of(first[7]), Some(&f.pages)).unwrap_err();
        assert!(matches!(e, PageError::Missing { table: Table::IdBuckets, .. }), "{e:?}");
    }

    /// Written in an image and read back, the buckets find every entry from
    /// the rows; images whose parts do not add up are refused.
    #[test]
    fn buckets_read_back_from_an_image() {
        let mut f = fixture();
        let mut buckets = IdBuckets::default();
        let all = entries(0, 9000);
        buckets.merge(&all, 9100, &mut f.pages).unwrap();
        let read = crate::image::round_trip(|w| buckets.write_image(w), |r| IdBuckets::read_image(r, 9100)).unwrap();
        assert_eq!((read.rows.clone(), read.len(), read.upto(), read.bits), (buckets.rows.clone(), 9000, 9100, 4));
        found(&read, &f.pages, &all);
        assert!(crate::image::round_trip(|w| buckets.write_image(w), |r| IdBuckets::read_image(r, 8999)).is_err());
        let empty = IdBuckets::default();
        let read = crate::image::round_trip(|w| empty.write_image(w), |r| IdBuckets::read_image(r, 0)).unwrap();
        assert!(read.of_hash(5, Some(&f.pages)).unwrap().is_empty());
        let forged = |bits: u32, n: usize, lens: u32, words: usize| {
            crate::image::round_trip(
                |w| {
                    w.u32(bits);
                    w.u32(0);
                    w.len(n);
                    for _ in 0..n {
                        w.raw(&[0; 16]);
                        w.u32(lens);
                    }
                    w.u64s(&vec![0; words]);
                },
                |r| IdBuckets::read_image(r, 100),
            )
            .map(|_| ())
        };
        assert!(forged(1, 2, 10, bloom_words(20)).is_ok());
        assert!(forged(1, 3, 10, bloom_words(30)).is_err(), "not 2^bits buckets");
        assert!(forged(1, 2, 10, bloom_words(20) + 1).is_err(), "a filter of another size");
        assert!(forged(1, 2, 60, bloom_words(120)).is_err(), "more entries than events");
        assert!(forged(40, 0, 0, 0).is_err(), "too many bits");
    }
}
