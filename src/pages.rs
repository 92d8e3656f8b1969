//! The paged store: rows of the engine's tables, read and written through a
//! synchronous interface, with a cache in front bounded by bytes.
//!
//! A room's engine can keep a table out of its own memory: each row goes to
//! a [`PageStore`] when the event is stored, and is read back through a
//! [`PageCache`] (least recently used first out, by bytes) when a query needs
//! it. The core never does I/O: the store is injected. Implementations:
//!
//! * [`MemoryPages`] here (rows in a map: for tests, and for hosts that want
//!   the interface without a backing store);
//! * a file of rows (the native CLI's `--cache-mib`, `src/bin/`);
//! * Durable Object SQLite (the Worker), through the wasm bindings.
//!
//! What is paged today: the PDU text (`Table::Pdu`), the largest part of a
//! room (its raw PDU bytes; a room without a page store holds them
//! compressed, about 0.45× of them), the IDs of full blocks of messages
//! (`Table::Ids`) and the packed full blocks of the event table
//! (`Table::Blocks`: a block keeps its state events packed apart), the ID
//! index's entries of settled messages (`Table::IdBuckets`) and the states'
//! pools of chunk entries and chunk lists (`Table::StatePools`). The
//! auth-chain index follows the same interface (docs/paged-store.md).

use std::collections::BTreeMap;
use std::sync::Arc;

/// A table of the paged store. Rows are keyed by text (an event ID, or a
/// number written in decimal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// An event's PDU, exactly as received, by event ID. An event ID names
    /// one event for good, so a row stays right whatever index the event
    /// gets when a room is restored or rebuilt from its log.
    Pdu,
    /// The room's image (`crate::image`): binary parts keyed
    /// `generation/part`, and `meta` (JSON) naming the current generation.
    Image,
    /// The event IDs of a full block of the event table (text: each ID's
    /// length, then the IDs), keyed by a hash of the row. The IDs of a
    /// block's events that are not state events are held nowhere else once
    /// the row is written; a row is never overwritten with other IDs, so a
    /// room restored beside the one it replaces shares the rows safely.
    Ids,
    /// A full block of the event table, packed (binary: its events' records
    /// and links, `event/packed.rs`), keyed by a hash of the row like
    /// [`Table::Ids`]. The records of a block's events that are not state
    /// events are held nowhere else once the row is written.
    Blocks,
    /// A bucket of the event ID index's entries of settled messages
    /// (binary: sorted `hash << 32 | index` words, `room/id_buckets.rs`),
    /// keyed by a hash of the row like [`Table::Ids`].
    IdBuckets,
    /// A segment of the states' pools (binary: 8 KiB of little-endian
    /// values, `state_set/pool.rs`), keyed by a hash of the row like
    /// [`Table::Ids`].
    StatePools,
}

impl Table {
    /// The table's name (SQL table names, messages).
    pub fn name(self) -> &'static str {
        match self {
            Table::Pdu => "pdu",
            Table::Image => "image",
            Table::Ids => "ids",
            Table::Blocks => "blocks",
            Table::IdBuckets => "id_buckets",
            Table::StatePools => "state_pools",
        }
    }
}

/// A paged store failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The store's backend failed (I/O, SQL, a host exception).
    #[error("page store: {0}")]
    Backend(String),
    /// A row the engine wrote is not there: the store lost data.
    #[error("page store: row {key} of table {} is missing", .table.name())]
    Missing {
        /// The table.
        table: Table,
        /// The row's key.
        key: String,
    },
    /// A row is not what the engine wrote (not UTF-8 text).
    #[error("page store: row {key} of table {} is corrupt", .table.name())]
    Corrupt {
        /// The table.
        table: Table,
        /// The row's key.
        key: String,
    },
}

/// Rows of the engine's tables, outside its memory.
///
/// Synchronous: the engine reads a row while it answers a query. A put
/// overwrites; [`delete`](Self::delete) undoes an event the engine did not
/// keep (a drop after its row was written, a batch rolled back).
pub trait PageStore {
    /// The row `key` of `table`, if written.
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, PageError>;
    /// Writes (or overwrites) the row `key` of `table`.
    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), PageError>;
    /// Deletes the row `key` of `table` (nothing if there is none).
    fn delete(&mut self, table: Table, key: &str) -> Result<(), PageError>;
    /// The keys of `table`'s rows, when the store can list them (`None`:
    /// it cannot, and rows that no image names stay; the default).
    fn keys(&self, _table: Table) -> Result<Option<Vec<String>>, PageError> {
        Ok(None)
    }
}

/// A [`PageStore`] in a map.
#[derive(Debug, Default)]
pub struct MemoryPages {
    rows: BTreeMap<(Table, Box<str>), Box<[u8]>>,
    /// Writes made (tests count them).
    pub writes: usize,
}

impl MemoryPages {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of rows of `table`.
    pub fn len_of(&self, table: Table) -> usize {
        self.rows.keys().filter(|(t, _)| *t == table).count()
    }

    /// The rows of `table`, key and value (to look into what a room wrote).
    pub fn rows_of(&self, table: Table) -> Vec<(String, Vec<u8>)> {
        self.rows.iter().filter(|((t, _), _)| *t == table).map(|((_, k), v)| (k.to_string(), v.to_vec())).collect()
    }
}

impl PageStore for MemoryPages {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, PageError> {
        Ok(self.rows.get(&(table, Box::from(key))).map(|r| r.to_vec()))
    }

    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), PageError> {
        self.writes += 1;
        self.rows.insert((table, key.into()), value.into());
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<(), PageError> {
        self.rows.remove(&(table, Box::from(key)));
        Ok(())
    }

    fn keys(&self, table: Table) -> Result<Option<Vec<String>>, PageError> {
        // Rows are ordered by table first: the table's keys are one range.
        let from = (table, Box::<str>::from(""));
        let keys = self.rows.range(from..).take_while(|((t, _), _)| *t == table).map(|((_, k), _)| k.to_string());
        Ok(Some(keys.collect()))
    }
}

/// What a restore from the room's log does with the page store's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreRows {
    /// Writes each restored event's row (a store that may lack rows: one
    /// filled before the room was paged, or a new one).
    Write,
    /// Writes nothing: the store holds the row of every event in the log
    /// (each row was written with its record, atomically).
    Trust,
}

/// A memory store shared by handles (`Rc::clone`): two rooms over the same
/// rows (a room restored beside the one it replaces), or a test looking into
/// the rows a room wrote.
impl PageStore for std::rc::Rc<std::cell::RefCell<MemoryPages>> {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, PageError> {
        self.borrow().get(table, key)
    }

    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), PageError> {
        self.borrow_mut().put(table, key, value)
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<(), PageError> {
        self.borrow_mut().delete(table, key)
    }

    fn keys(&self, table: Table) -> Result<Option<Vec<String>>, PageError> {
        self.borrow().keys(table)
    }
}

/// The smallest cache: rows larger than this are read each time.
pub const MIN_CACHE_BYTES: usize = 4096;

/// Where row `n` of `table` is in a [`PageCache`].
fn cache_key(table: Table, n: u32) -> u64 {
    (table as u64) << 32 | u64::from(n)
}

/// Text rows of one table read through a store, the most recently used kept
/// in memory up to a number of bytes.
pub struct PageCache {
    store: Box<dyn PageStore>,
    table: Table,
    capacity: usize,
    /// Set while a room is restored (see [`set_restoring`](Self::set_restoring)).
    restoring: Option<RestoreRows>,
    cached: std::cell::RefCell<Cached>,
}

struct Cached {
    /// By [`cache_key`]: the table and the row's number.
    rows: lru::LruCache<u64, Row>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

/// A row held by a [`PageCache`]: text (PDUs, IDs) or bytes (packed blocks).
#[derive(Clone)]
enum Row {
    Text(Arc<str>),
    Bytes(Arc<[u8]>),
}

impl Row {
    fn len(&self) -> usize {
        match self {
            Row::Text(t) => t.len(),
            Row::Bytes(b) => b.len(),
        }
    }
}

/// What a [`PageCache`] did (for benchmarks and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes of rows held.
    pub bytes: usize,
    /// The limit.
    pub capacity: usize,
    /// Rows held.
    pub rows: usize,
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads that went to the store.
    pub misses: u64,
}

impl std::fmt::Debug for PageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCache").field("table", &self.table).field("stats", &self.stats()).finish()
    }
}

impl PageCache {
    /// A cache of at most `capacity_bytes` (at least [`MIN_CACHE_BYTES`]) in
    /// front of `store`'s `table`.
    pub fn new(store: Box<dyn PageStore>, table: Table, capacity_bytes: usize) -> Self {
        Self {
            store,
            table,
            capacity: capacity_bytes.max(MIN_CACHE_BYTES),
            restoring: None,
            cached: std::cell::RefCell::new(Cached { rows: lru::LruCache::unbounded(), bytes: 0, hits: 0, misses: 0 }),
        }
    }

    /// The row of the event at `idx` with ID `key`, from memory or from the store.
    pub fn get(&self, idx: u32, key: &str) -> Result<Arc<str>, PageError> {
        self.get_row(self.table, idx, || key.to_owned())
    }

    /// Row `key()` of `table`, numbered `n` in the cache (its number names
    /// it there: one row per number), from memory or from the store (the
    /// key is made only then). Rows of every table share the cache's bytes.
    pub(crate) fn get_row(&self, table: Table, n: u32, key: impl FnOnce() -> String) -> Result<Arc<str>, PageError> {
        let row = self.get_cached(table, n, key, |bytes, key| {
            let text = String::from_utf8(bytes).map_err(|_| PageError::Corrupt { table, key: key.to_owned() })?;
            Ok(Row::Text(text.into()))
        })?;
        match row {
            Row::Text(text) => Ok(text),
            Row::Bytes(_) => unreachable!("a table's rows are all text or all bytes"),
        }
    }

    /// Binary row `key()` of `table`, numbered `n` in the cache (as
    /// [`get_row`](Self::get_row)); read from the store only if `valid`
    /// says it is the row the engine wrote (a row named by its hash).
    pub(crate) fn get_bytes(
        &self,
        table: Table,
        n: u32,
        key: impl FnOnce() -> String,
        valid: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Arc<[u8]>, PageError> {
        let row = self.get_cached(table, n, key, |bytes, key| {
            if !valid(&bytes) {
                return Err(PageError::Corrupt { table, key: key.to_owned() });
            }
            Ok(Row::Bytes(bytes.into()))
        })?;
        match row {
            Row::Bytes(bytes) => Ok(bytes),
            Row::Text(_) => unreachable!("a table's rows are all text or all bytes"),
        }
    }

    /// Row `key()` of `table` (numbered `n`) from memory, or from the store
    /// made a row by `admit` and kept.
    fn get_cached(
        &self,
        table: Table,
        n: u32,
        key: impl FnOnce() -> String,
        admit: impl FnOnce(Vec<u8>, &str) -> Result<Row, PageError>,
    ) -> Result<Row, PageError> {
        let mut c = self.cached.borrow_mut();
        let at = cache_key(table, n);
        if let Some(row) = c.rows.get(&at) {
            let row = row.clone();
            c.hits += 1;
            return Ok(row);
        }
        c.misses += 1;
        let key = key();
        let bytes = self.store.get(table, &key)?.ok_or_else(|| PageError::Missing { table, key: key.clone() })?;
        let row = admit(bytes, &key)?;
        Self::admit(&mut c, self.capacity, at, row.clone());
        Ok(row)
    }

    /// Writes row `key` of `table`, a row named by a hash of its content
    /// (a row of IDs). A restore that trusts the store's rows writes it
    /// only if it is missing: the events may have been numbered otherwise
    /// when the rows were written.
    pub(crate) fn put_row(&mut self, table: Table, key: &str, row: &[u8]) -> Result<(), PageError> {
        if self.restoring == Some(RestoreRows::Trust) && self.store.get(table, key)?.is_some() {
            return Ok(());
        }
        self.store.put(table, key, row)
    }

    fn admit(c: &mut Cached, capacity: usize, key: u64, row: Row) {
        if row.len() > capacity {
            return;
        }
        c.bytes += row.len();
        if let Some(old) = c.rows.put(key, row) {
            c.bytes -= old.len();
        }
        while c.bytes > capacity {
            let Some((_, out)) = c.rows.pop_lru() else { break };
            c.bytes -= out.len();
        }
    }

    /// Writes row `key`. It enters the cache when it is first read (ingest
    /// never reads a PDU back: caching on write would copy every PDU once
    /// more for nothing).
    pub fn put(&mut self, idx: u32, key: &str, text: &str) -> Result<(), PageError> {
        if self.restoring != Some(RestoreRows::Trust) {
            self.store.put(self.table, key, text.as_bytes())?;
        }
        self.forget(idx);
        Ok(())
    }

    /// Drops the cached rows of `table` (rows numbered otherwise from now
    /// on: the ID index's buckets after a merge).
    pub(crate) fn forget_table(&mut self, table: Table) {
        let c = self.cached.get_mut();
        let gone: Vec<u64> = c.rows.iter().map(|(k, _)| *k).filter(|k| k >> 32 == table as u64).collect();
        for k in gone {
            if let Some(old) = c.rows.pop(&k) {
                c.bytes -= old.len();
            }
        }
    }

    fn forget(&mut self, idx: u32) {
        let c = self.cached.get_mut();
        if let Some(old) = c.rows.pop(&cache_key(self.table, idx)) {
            c.bytes -= old.len();
        }
    }

    /// Undoes the row of an event that was not kept (at `idx`, ID `key`):
    /// deleted from the store, except while restoring.
    pub fn undo(&mut self, idx: u32, key: &str) -> Result<(), PageError> {
        self.forget(idx);
        if self.restoring.is_some() {
            return Ok(());
        }
        self.store.delete(self.table, key)
    }

    /// Marks a restore from the room's log: while set, [`undo`](Self::undo)
    /// keeps the store's row (a room being restored or rebuilt shares the
    /// store with the room it replaces, whose events are the same: an event
    /// the new room undoes may be one the old room holds), and with
    /// [`RestoreRows::Trust`] nothing is written. Outside a restore, undone
    /// rows are deleted (a sender could otherwise fill the store with PDUs
    /// that are dropped after their row is written).
    pub fn set_restoring(&mut self, restoring: Option<RestoreRows>) {
        self.restoring = restoring;
    }

    /// The store behind the cache, the cache given up.
    pub fn into_store(self) -> Box<dyn PageStore> {
        self.store
    }

    /// The store behind the cache (to write other tables into it).
    pub fn store(&self) -> &dyn PageStore {
        &*self.store
    }

    /// The store behind the cache, to write other tables into it.
    pub fn store_mut(&mut self) -> &mut dyn PageStore {
        &mut *self.store
    }

    /// What it holds and did.
    pub fn stats(&self) -> CacheStats {
        let c = self.cached.borrow();
        CacheStats { bytes: c.bytes, capacity: self.capacity, rows: c.rows.len(), hits: c.hits, misses: c.misses }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize) -> PageCache {
        PageCache::new(Box::new(MemoryPages::new()), Table::Pdu, capacity)
    }

    fn id(k: u32) -> String {
        format!("$event{k}")
    }

    #[test]
    fn rows_come_back_and_the_cache_stays_within_its_bytes() {
        let mut c = cache(MIN_CACHE_BYTES);
        let row = |k: u32| format!("{k:0>1000}");
        for k in 0..20 {
            c.put(k, &id(k), &row(k)).unwrap();
            assert_eq!(c.stats().bytes, 0, "rows are cached when read, not when written");
        }
        for k in 0..20 {
            assert_eq!(&*c.get(k, &id(k)).unwrap(), row(k));
            assert!(c.stats().bytes <= MIN_CACHE_BYTES);
        }
        let s = c.stats();
        assert_eq!(s.rows, 4, "{s:?}");
        assert_eq!(s.misses, 20, "{s:?}");
        // The newest four were kept: reading them again costs no store read.
        for k in 16..20 {
            c.get(k, &id(k)).unwrap();
        }
        assert_eq!(c.stats().misses, 20);
        assert_eq!(c.stats().hits, 4);
    }

    #[test]
    fn a_row_larger_than_the_cache_is_read_each_time_and_never_held() {
        let mut c = cache(MIN_CACHE_BYTES);
        let big = "x".repeat(MIN_CACHE_BYTES + 1);
        c.put(0, "$big", &big).unwrap();
        assert_eq!(&*c.get(0, "$big").unwrap(), big);
        assert_eq!(c.stats().rows, 0);
    }

    #[test]
    fn undo_deletes_the_row_except_while_restoring() {
        let mut c = cache(1 << 20);
        for k in 0..3 {
            c.put(k, &id(k), &format!("row {k}")).unwrap();
            c.get(k, &id(k)).unwrap();
        }
        c.undo(2, &id(2)).unwrap();
        assert_eq!(c.get(2, &id(2)), Err(PageError::Missing { table: Table::Pdu, key: id(2) }));
        c.set_restoring(Some(RestoreRows::Write));
        c.undo(1, &id(1)).unwrap();
        assert_eq!(&*c.get(1, &id(1)).unwrap(), "row 1", "kept in the store, read back");
        assert_eq!(c.stats().rows, 2);
        c.set_restoring(Some(RestoreRows::Trust));
        c.put(5, &id(5), "row 5").unwrap();
        assert_eq!(c.get(5, &id(5)), Err(PageError::Missing { table: Table::Pdu, key: id(5) }), "trusted: not written");
    }

    #[test]
    fn a_row_that_is_not_text_is_a_typed_error() {
        let mut store = MemoryPages::new();
        store.put(Table::Pdu, "$x", &[0xff, 0xfe]).unwrap();
        let c = PageCache::new(Box::new(store), Table::Pdu, 1 << 20);
        assert_eq!(c.get(3, "$x"), Err(PageError::Corrupt { table: Table::Pdu, key: "$x".into() }));
    }
}

/// A page store for unit tests: rows in memory, reads counted, writes made
/// to fail from the `n`th on.
#[cfg(test)]
pub(crate) mod testing {
    use super::{MemoryPages, PageCache, PageError, PageStore, Table};
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    /// A memory store counting reads, whose writes can be made to fail
    /// from the `n`th on.
    struct Store {
        rows: Rc<RefCell<MemoryPages>>,
        reads: Rc<Cell<usize>>,
        fail_from: Rc<Cell<usize>>,
    }

    impl PageStore for Store {
        fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, PageError> {
            self.reads.set(self.reads.get() + 1);
            self.rows.borrow().get(table, key)
        }
        fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), PageError> {
            if self.fail_from.get() == 0 {
                return Err(PageError::Backend("full".into()));
            }
            self.fail_from.set(self.fail_from.get() - 1);
            self.rows.borrow_mut().put(table, key, value)
        }
        fn delete(&mut self, table: Table, key: &str) -> Result<(), PageError> {
            self.rows.borrow_mut().delete(table, key)
        }
        fn keys(&self, table: Table) -> Result<Option<Vec<String>>, PageError> {
            self.rows.borrow().keys(table)
        }
    }

    /// A cache over a [`Store`], and the store's rows and counters.
    pub(crate) struct Fixture {
        pub(crate) pages: PageCache,
        pub(crate) rows: Rc<RefCell<MemoryPages>>,
        pub(crate) reads: Rc<Cell<usize>>,
        /// Writes that succeed before they fail (`usize::MAX`: all).
        pub(crate) fail_from: Rc<Cell<usize>>,
    }

    /// A fixture whose cache holds `cache_bytes`.
    pub(crate) fn fixture_with_cache(cache_bytes: usize) -> Fixture {
        let (rows, reads, fail_from) = (Rc::default(), Rc::new(Cell::new(0)), Rc::new(Cell::new(usize::MAX)));
        let store = Store { rows: Rc::clone(&rows), reads: Rc::clone(&reads), fail_from: Rc::clone(&fail_from) };
        Fixture { pages: PageCache::new(Box::new(store), Table::Pdu, cache_bytes), rows, reads, fail_from }
    }

    /// A fixture with a 1 MiB cache.
    pub(crate) fn fixture() -> Fixture {
        fixture_with_cache(1 << 20)
    }
}
