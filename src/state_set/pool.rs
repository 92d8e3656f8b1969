//! The states' pools as segments: the chunk recipes' removed positions and
//! added entries, and the chunk lists' runs, are append-only runs of values
//! ([`super::stored`]). A pool is cut into segments of [`SEGMENT_BYTES`];
//! a full segment that no open batch can cut is written as a row of
//! [`Table::StatePools`] named by the first 16 bytes of its SHA-256 (checked
//! when read back) and leaves memory ([`Pool::page`]); the pool keeps the
//! rows' keys and the values after them (the open segment, and those not
//! yet written). A run is read from its rows through the page cache, so a
//! state or chunk built from rows costs a row read per segment it crosses.
//!
//! Without a page store nothing is written: the pool is its values.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use crate::event::{row_key, row_key_text};
use crate::image::{ImageError, Reader, Writer};
use crate::pages::{PageCache, PageError, Table};

/// A segment's bytes (1,024 entries of a chunk, 2,048 removed positions or
/// chunk numbers).
pub(super) const SEGMENT_BYTES: usize = 8192;

/// A value of a pool, as little-endian bytes in its rows.
pub(super) trait Word: Copy + std::fmt::Debug {
    const BYTES: usize;
    fn put(self, out: &mut Vec<u8>);
    fn at(row: &[u8], i: usize) -> Self;
    fn write_image(w: &mut Writer<'_>, v: &[Self]);
    fn read_image(r: &mut Reader<'_>, out: &mut Vec<Self>) -> Result<(), ImageError>;
}

impl Word for u32 {
    const BYTES: usize = 4;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn at(row: &[u8], i: usize) -> Self {
        u32::from_le_bytes(row[4 * i..4 * i + 4].try_into().expect("4 bytes"))
    }
    fn write_image(w: &mut Writer<'_>, v: &[Self]) {
        w.u32s(v.iter().copied());
    }
    fn read_image(r: &mut Reader<'_>, out: &mut Vec<Self>) -> Result<(), ImageError> {
        r.u32s_into(out)
    }
}

impl Word for u64 {
    const BYTES: usize = 8;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn at(row: &[u8], i: usize) -> Self {
        u64::from_le_bytes(row[8 * i..8 * i + 8].try_into().expect("8 bytes"))
    }
    fn write_image(w: &mut Writer<'_>, v: &[Self]) {
        w.u64s(v);
    }
    fn read_image(r: &mut Reader<'_>, out: &mut Vec<Self>) -> Result<(), ImageError> {
        r.u64s_into(out)
    }
}

/// Which pool (its rows' numbers in the page cache).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Which {
    #[default]
    Removed = 0,
    Added = 1,
    Lists = 2,
}

/// An append-only run of values, its full segments rows of the page store.
#[derive(Debug, Default)]
pub(super) struct Pool<T> {
    which: Which,
    /// The keys of the rows of segments `0..rows.len()`.
    rows: Vec<[u8; 16]>,
    /// The values from segment `rows.len()` on.
    open: Vec<T>,
}

impl<T: Word> Pool<T> {
    /// Values a segment holds.
    pub(super) const SEGMENT: usize = SEGMENT_BYTES / T::BYTES;

    pub(super) fn new(which: Which) -> Self {
        Self { which, rows: Vec::new(), open: Vec::new() }
    }

    /// Values in the pool.
    pub(super) fn len(&self) -> usize {
        self.paged() + self.open.len()
    }

    /// Values in rows.
    fn paged(&self) -> usize {
        self.rows.len() * Self::SEGMENT
    }

    /// Rows written, and the bytes of the values held (for measuring).
    pub(super) fn footprint(&self) -> (usize, usize) {
        (self.rows.len(), self.open.capacity() * T::BYTES + self.rows.capacity() * 16)
    }

    /// The keys of its rows.
    pub(super) fn row_keys(&self) -> &[[u8; 16]] {
        &self.rows
    }

    /// Appends values.
    pub(super) fn extend(&mut self, v: &[T]) {
        super::stored::grow(&mut self.open, v.len());
        self.open.extend_from_slice(v);
    }

    /// Keeps the first `len` values (never fewer than are in rows: a
    /// rollback cuts only what its batch added, and a batch's values are
    /// written only once it is stored).
    pub(super) fn truncate(&mut self, len: usize) {
        debug_assert!(len >= self.paged(), "a rollback reaches values written as rows");
        self.open.truncate(len.saturating_sub(self.paged()));
    }

    /// The values in `range`: held ones borrowed, else read from their rows.
    ///
    /// # Errors
    /// A row could not be read back, or is not the row written.
    pub(super) fn read(&self, range: Range<usize>, pages: Option<&PageCache>) -> Result<Cow<'_, [T]>, PageError> {
        let paged = self.paged();
        if range.start >= paged {
            return Ok(Cow::Borrowed(&self.open[range.start - paged..range.end - paged]));
        }
        let mut out = Vec::with_capacity(range.len());
        let mut at = range.start;
        while at < range.end.min(paged) {
            let s = at / Self::SEGMENT;
            let row = self.row(s, pages)?;
            let end = range.end.min((s + 1) * Self::SEGMENT);
            out.extend((at - s * Self::SEGMENT..end - s * Self::SEGMENT).map(|i| T::at(&row, i)));
            at = end;
        }
        if range.end > paged {
            out.extend_from_slice(&self.open[..range.end - paged]);
        }
        Ok(Cow::Owned(out))
    }

    /// Segment `s`'s row, through the cache.
    fn row(&self, s: usize, pages: Option<&PageCache>) -> Result<Arc<[u8]>, PageError> {
        let key = self.rows[s];
        let Some(pages) = pages else {
            return Err(PageError::Missing { table: Table::StatePools, key: row_key_text(&key) });
        };
        let n = (self.which as u32) << 28 | s as u32;
        pages.get_bytes(
            Table::StatePools,
            n,
            || row_key_text(&key),
            |row| row.len() == SEGMENT_BYTES && row_key(row) == key,
        )
    }

    /// Writes every full segment as a row and lets go of its values; the
    /// rows written.
    ///
    /// # Errors
    /// A row could not be written: the segments before it are rows, the
    /// others held (tried again at the next call).
    pub(super) fn page(&mut self, pages: &mut PageCache) -> Result<usize, PageError> {
        let mut done = 0;
        let mut result = Ok(());
        while (done + 1) * Self::SEGMENT <= self.open.len() {
            let values = &self.open[done * Self::SEGMENT..(done + 1) * Self::SEGMENT];
            let mut bytes = Vec::with_capacity(SEGMENT_BYTES);
            values.iter().for_each(|v| v.put(&mut bytes));
            let key = row_key(&bytes);
            if let Err(e) = pages.put_row(Table::StatePools, &row_key_text(&key), &bytes) {
                result = Err(e);
                break;
            }
            self.rows.push(key);
            done += 1;
        }
        self.open.drain(..done * Self::SEGMENT);
        if self.open.capacity() > 2 * self.open.len().max(Self::SEGMENT) {
            self.open.shrink_to(self.open.len().max(Self::SEGMENT));
        }
        result.map(|()| done)
    }

    /// Writes the rows' keys and the values held.
    pub(super) fn write_image(&self, w: &mut Writer<'_>) {
        w.len(self.rows.len());
        self.rows.iter().for_each(|k| w.raw(k));
        T::write_image(w, &self.open);
    }

    /// Reads what [`write_image`](Self::write_image) wrote.
    pub(super) fn read_image(r: &mut Reader<'_>, which: Which) -> Result<Self, ImageError> {
        let n = r.len(16)?;
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            rows.push(r.take(16)?.try_into().expect("16 bytes"));
        }
        let mut open = Vec::new();
        T::read_image(r, &mut open)?;
        Ok(Self { which, rows, open })
    }

    /// The values held in memory, from value `from` on (an image reader
    /// checks those).
    pub(super) fn held_from(&self, from: usize) -> Option<&[T]> {
        from.checked_sub(self.paged()).map(|at| &self.open[at.min(self.open.len())..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StateKeyIdx;
    use crate::ids::EventIdx;
    use crate::pages::testing::{fixture_with_cache, Fixture};
    use crate::pages::PageStore;
    use crate::state_set::{StateMap, StateSetId, StateSets};

    /// 6,000 states of a room whose 2,000 keys change one at a time, some
    /// steps removing a key (every pool gets several segments).
    fn maps() -> Vec<StateMap> {
        let mut map = StateMap::default();
        (0..6000u32)
            .map(|i| {
                let value = (i % 7 != 3).then_some(EventIdx(i));
                map = map.with_changes(&[(StateKeyIdx(i * 7919 % 2000), value)]);
                map.clone()
            })
            .collect()
    }

    /// The states interned in memory, and the same interned with their
    /// pools paged every 50 states, nothing built kept (a cache smaller than
    /// a segment: every run is read from the store).
    fn both() -> (StateSets, StateSets, Vec<StateSetId>, Fixture) {
        let mut f = fixture_with_cache(0);
        let (mut sets, mut paged) = (StateSets::new(), StateSets::new());
        paged.set_budget(0);
        let mut ids = Vec::new();
        for (i, m) in maps().into_iter().enumerate() {
            let id = sets.intern(m.clone(), None);
            assert_eq!(paged.intern(m, Some(&f.pages)), id);
            ids.push(id);
            if i % 50 == 49 {
                paged.page(&mut f.pages).unwrap();
            }
        }
        (sets, paged, ids, f)
    }

    fn same_states(a: &StateSets, b: &StateSets, pages: Option<&PageCache>, ids: &[StateSetId]) {
        for id in ids.iter().step_by(7).chain(ids.last()) {
            assert_eq!(b.get(*id, pages).unwrap(), a.get(*id, None).unwrap(), "state {id:?}");
            for k in [0, 1, 999, 1999, 2000] {
                let key = StateKeyIdx(k);
                assert_eq!(b.lookup(*id, key, pages).unwrap(), a.lookup(*id, key, None).unwrap());
            }
        }
    }

    /// Paged pools hold what the pools in memory hold: every state and
    /// entry reads the same, most values are rows, and an image of the
    /// paged room names the rows and reads back the same states.
    #[test]
    fn states_read_from_rows_are_the_states_interned() {
        let (sets, mut paged, ids, mut f) = both();
        let rows: Vec<usize> = paged.pools_footprint().iter().map(|(rows, _)| *rows).collect();
        assert!(rows.iter().all(|r| *r > 0), "rows of each pool: {rows:?}");
        let held: usize = paged.pools_footprint().iter().map(|(_, bytes)| *bytes).sum();
        let in_memory: usize = sets.pools_footprint().iter().map(|(_, bytes)| *bytes).sum();
        assert!(held * 3 < in_memory, "{held} bytes held paged, {in_memory} in memory");
        assert_eq!(paged.footprint(), sets.footprint());
        same_states(&sets, &paged, Some(&f.pages), &ids);
        // Nothing to read without the store.
        paged.trim();
        let missing = paged.get(ids[5], None).unwrap_err();
        assert!(matches!(missing, PageError::Missing { table: Table::StatePools, .. }), "{missing}");
        // An image names the rows: read back beside the same store.
        paged.page(&mut f.pages).unwrap();
        let again =
            crate::image::round_trip(|w| paged.write_image(w), |r| StateSets::read_image(r, 2000, 6000)).unwrap();
        same_states(&sets, &again, Some(&f.pages), &ids);
        let rows_of = |s: &StateSets| s.pools_footprint().map(|(rows, _)| rows);
        assert_eq!(rows_of(&again), rows_of(&paged));
    }

    /// A rollback cuts what its batch interned without reading a row; the
    /// states interned again are stored as before.
    #[test]
    fn a_rollback_reads_nothing_and_forgets_its_states() {
        let (sets, mut paged, ids, mut f) = both();
        paged.page(&mut f.pages).unwrap();
        let (len, footprint, mark) = (paged.len(), paged.footprint(), paged.mark());
        let newest = sets.get(*ids.last().unwrap(), None).unwrap().clone();
        for j in 0..300u32 {
            paged.intern(newest.with_changes(&[(StateKeyIdx(j * 3), Some(EventIdx(9000 + j)))]), Some(&f.pages));
        }
        let reads = f.reads.get();
        paged.truncate(&mark);
        assert_eq!(f.reads.get(), reads, "no row read");
        assert_eq!((paged.len(), paged.footprint()), (len, footprint));
        same_states(&sets, &paged, Some(&f.pages), &ids);
        let next = newest.with_changes(&[(StateKeyIdx(1), None)]);
        assert_eq!(paged.intern(next.clone(), Some(&f.pages)), StateSetId(len as u32));
        assert_eq!(paged.get(StateSetId(len as u32), Some(&f.pages)).unwrap(), &next);
    }

    /// A damaged or missing row is a typed error when a state needs it;
    /// interning still works (a chunk it cannot compare is stored anew); a
    /// row that fails to be written stays held and is written next time.
    #[test]
    fn a_damaged_row_is_an_error_and_a_failed_write_loses_nothing() {
        let (sets, mut paged, ids, mut f) = both();
        // A write failing: the values stay held, then are written.
        let newest = sets.get(*ids.last().unwrap(), None).unwrap().clone();
        for j in 0..400u32 {
            paged.intern(newest.with_changes(&[(StateKeyIdx(j * 5), Some(EventIdx(7000 + j)))]), Some(&f.pages));
        }
        let before = paged.pools_footprint();
        f.fail_from.set(0);
        assert!(paged.page(&mut f.pages).is_err());
        assert_eq!(paged.pools_footprint()[0], before[0], "nothing written, nothing let go");
        f.fail_from.set(usize::MAX);
        assert!(paged.page(&mut f.pages).unwrap() > 0);
        same_states(&sets, &paged, Some(&f.pages), &ids);
        // Every row damaged: the states not built are errors, never wrong.
        paged.trim();
        let keys: Vec<String> = f.rows.borrow().rows_of(Table::StatePools).into_iter().map(|(k, _)| k).collect();
        for k in &keys {
            f.rows.borrow_mut().put(Table::StatePools, k, &[0; SEGMENT_BYTES]).unwrap();
        }
        let old = ids[100];
        let e = paged.get(old, Some(&f.pages)).unwrap_err();
        assert!(matches!(e, PageError::Corrupt { table: Table::StatePools, .. }), "{e}");
        assert!(paged.lookup(old, StateKeyIdx(3), Some(&f.pages)).is_err());
        let id = paged.intern(sets.get(old, None).unwrap().clone(), Some(&f.pages));
        assert_eq!(paged.get(id, Some(&f.pages)).unwrap(), sets.get(old, None).unwrap(), "stored anew");
        // Rows missing altogether.
        for k in &keys {
            f.rows.borrow_mut().delete(Table::StatePools, k).unwrap();
        }
        let e = paged.get(ids[200], Some(&f.pages)).unwrap_err();
        assert!(matches!(e, PageError::Missing { table: Table::StatePools, .. }), "{e}");
    }
}
