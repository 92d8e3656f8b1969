//! The interned states as the room keeps them: every chunk as it is
//! written to the room image (its entries, or its base chunk, the positions
//! of the base's entries it drops and the entries it adds), every state as
//! its size, hash, chunk bits and chunk numbers. That is about a tenth of
//! the states built (the 150,000-event room's 36,015 chunks are 1.3 MB
//! stored and 19 MB built).
//!
//! Chunks and states are built into [`StateMap`]s when first asked for, and
//! kept built in a cache that [`Stored::trim`] empties past its budget: a
//! state's cell is emptied (the newest few stay), then every chunk no built
//! state, no caller and no current state holds (its only reference is the
//! cache's). A chunk is therefore built at most once while anything holds
//! it, so a chunk number stands for one address, and state resolution can
//! still tell shared chunks by address ([`super::common_chunks`]).
//!
//! A new state's chunks get numbers when it is interned
//! ([`Stored::number`]): a chunk it shares with a built state by address, a
//! chunk equal to a known chunk by content (the equal chunk's built copy
//! replaces it), else a new number and a recipe: its change against the
//! last chunk stored with the same first key when that is less than half
//! its size and that chunk is fewer than [`MAX_CHAIN`] changes from one
//! stored whole, else its entries.
//!
//! The recipes' removed positions and added entries and the lists' chunk
//! numbers are runs of three append-only pools ([`super::pool`]); with a
//! page store, their full segments are rows ([`Stored::page`], between
//! batches), so building a state may read rows and fails with a
//! [`PageError`] when one cannot be read back (interning never fails: see
//! [`Stored::push_map`]). A rollback reads nothing: its [`Mark`] keeps the
//! extent and the newest list.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::sync::Arc;

use super::cells::PagedCells;
use super::pool::{Pool, Which};
use super::{entry_hash, StateMap};
use crate::ids::IntMap;
use crate::pages::{PageCache, PageError, Table};

/// The most changes between a chunk and the chunk stored whole it is
/// built from (a chunk is stored whole rather than go further; an image
/// reader refuses longer chains). Without it the 150,000-event room had
/// chains of 9,082. 64 rather than 32: at Matrix HQ's size the chunks
/// stored whole every 32 changes were 4 MiB of the room's 117.6 (its
/// `/state_ids` p99 12–15 ms → 15–18 ms, building chunks through longer
/// chains; an image with such chains is refused by builds before this one,
/// which then replay the room's log).
pub const MAX_CHAIN: u32 = 64;

/// No base: a chunk stored whole.
pub(super) const WHOLE: u32 = u32::MAX;

/// The most changes between a map's chunk list and a list stored whole
/// (building a map reads at most this many lists back). 64 rather than 32:
/// 2 MiB less at Matrix HQ's size, its `/state_ids` no slower.
pub(super) const LIST_CHAIN: u32 = 64;

/// The newest states [`Stored::trim`] keeps built (the state before the
/// next event is almost always one of them).
pub(super) const KEEP_NEWEST: usize = 16;

/// A chunk as stored (16 bytes: one a chunk, 111,000 at Matrix HQ's size):
/// its `added` entries (whole), or its base chunk's entries without those
/// at its `removed` positions, merged with `added`. Its lists are the runs
/// of [`Stored`]'s pools that end at `removed_end` and `added_end`. How many
/// changes it is from a chunk stored whole is found by walking its bases
/// ([`Stored::depth_of`], at most [`MAX_CHAIN`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Recipe {
    pub(super) base: u32,
    pub(super) len: u32,
    pub(super) removed_end: u32,
    pub(super) added_end: u32,
}

/// A map's chunk list as stored (8 bytes: one a state, 111,120 at Matrix
/// HQ's size): whole (its run of the pool; nothing kept), or the list before
/// it with `keep_front` chunks kept at its start and `keep_back` at its end
/// and its run between them (most states are the one before with a chunk
/// or two replaced; a change keeps at least three chunks, so a list that
/// keeps none is whole).
#[derive(Clone, Copy, Debug)]
pub(super) struct List {
    /// Its run of the pool ends here.
    pub(super) end: u32,
    pub(super) keep_front: u16,
    pub(super) keep_back: u16,
}

impl List {
    /// Whether it is stored whole.
    pub(super) fn whole(self) -> bool {
        self.keep_front == 0 && self.keep_back == 0
    }
}

/// A map's size and content hash (its chunk bits follow from its size:
/// [`super::chunk_bits`]). Kept in two vectors, 12 bytes a state.
#[derive(Clone, Copy, Debug)]
pub(super) struct MapHead {
    /// Entries (fewer than 2^32: one a state key, and state keys are `u32`).
    pub(super) len: u32,
    pub(super) hash: u64,
}

/// What is built, and how to find a built or stored chunk.
#[derive(Debug, Default)]
struct Built {
    /// Built chunks by address (each is in its cell of `Stored::chunks`).
    by_address: IntMap<usize, u32>,
    /// Chunks by content hash: those stored since the room was created or
    /// read back, and those read back once built (a chunk equal to one that
    /// is in neither gets a number of its own, which costs only sharing).
    by_content: IntMap<u64, u32>,
    /// The last chunk stored or built with each first key (a new chunk's
    /// base).
    by_first: IntMap<u32, u32>,
    /// The chunks and states whose cells are set.
    chunks: Vec<u32>,
    maps: Vec<u32>,
    /// Their bytes, about.
    bytes: usize,
}

/// Every state and chunk of a room, stored, and those built.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) recipes: Vec<Recipe>,
    /// The recipes' removed positions and added entries (their runs end
    /// at each recipe's `removed_end` and `added_end`): full segments are
    /// rows of the page store once stored ([`Stored::page`]).
    pub(super) removed: Pool<u32>,
    pub(super) added: Pool<u64>,
    /// Each chunk while built (boxed: a cell per chunk, most of them empty,
    /// is then a pointer wide, not an `Arc<[u64]>`'s two: 1.7 MB at Matrix
    /// HQ's size).
    chunks: Vec<OnceCell<Box<Arc<[u64]>>>>,
    /// Each map's [`MapHead`]: its content hash, and its size.
    hashes: Vec<u64>,
    lens: Vec<u32>,
    /// Map `i`'s chunk list, and the pool of their runs (paged as the
    /// recipes' pools are).
    pub(super) lists: Vec<List>,
    pub(super) list_pool: Pool<u32>,
    /// The newest map's chunk list (the next one is stored against it).
    pub(super) last: Vec<u32>,
    /// Each map while built (boxed: a cell is then a pointer wide, not a
    /// map's 40 bytes), in pages allocated while one of their maps is
    /// built: few are at once (the newest, and those queries read).
    maps: PagedCells<Box<StateMap>>,
    built: RefCell<Built>,
    /// Bytes built when the cache was last trimmed (what it could not drop).
    floor: usize,
}

impl Default for Stored {
    fn default() -> Self {
        Self {
            recipes: Vec::new(),
            removed: Pool::new(Which::Removed),
            added: Pool::new(Which::Added),
            chunks: Vec::new(),
            hashes: Vec::new(),
            lens: Vec::new(),
            lists: Vec::new(),
            list_pool: Pool::new(Which::Lists),
            last: Vec::new(),
            maps: PagedCells::default(),
            built: RefCell::default(),
            floor: 0,
        }
    }
}

/// The extent of the stored states at a checkpoint: what a rollback keeps,
/// known without reading a row.
#[derive(Clone, Debug)]
pub(super) struct Mark {
    maps: usize,
    chunks: usize,
    last: Vec<u32>,
}

impl Mark {
    /// States then.
    pub(super) fn maps(&self) -> usize {
        self.maps
    }
}

/// Makes room in `v` for `extra` more values, growing it by an eighth when
/// it is full rather than doubling it: these vectors grow with the room for
/// its life (8 MiB of chunk entries at Matrix HQ's size), and doubling left
/// up to half of each unused, and held the old and the new copies (three
/// times the values) while it moved them.
pub(super) fn grow<T>(v: &mut Vec<T>, extra: usize) {
    if v.capacity() - v.len() < extra {
        v.reserve_exact(extra.max(v.len() / 8));
    }
}

/// The content hash of a chunk's entries (in order).
pub(super) fn chunk_hash(c: &[u64]) -> u64 {
    c.iter().fold(0x51_7c_c1_b7_27_22_0a_95u64, |h, x| entry_hash(h ^ *x))
}

fn address(c: &Arc<[u64]>) -> usize {
    Arc::as_ptr(c) as *const u64 as usize
}

fn chunk_bytes(c: &[u64]) -> usize {
    std::mem::size_of_val(c) + 2 * std::mem::size_of::<usize>()
}

fn map_bytes(chunks: usize) -> usize {
    chunks * std::mem::size_of::<Arc<[u64]>>() + std::mem::size_of::<StateMap>()
}

/// A chunk recipe's removed positions and added entries (borrowed when
/// held, read from rows when not).
pub(super) type Change<'a> = (Cow<'a, [u32]>, Cow<'a, [u64]>);

/// A chunk number that no recipe has: only from a damaged row.
fn no_such_chunk(n: u32) -> PageError {
    PageError::Corrupt { table: Table::StatePools, key: format!("(a state's chunk {n}, past the room's chunks)") }
}

impl Stored {
    /// Drops the stored states part by part (see `Room::drop_by_parts`).
    pub(super) fn drop_by_parts(mut self, dropped: &mut dyn FnMut(&'static str)) {
        drop((std::mem::take(&mut self.maps), std::mem::take(&mut self.chunks), self.built.take()));
        dropped("states: built states and chunks (a cache), the cells they are in, their lookup maps");
        drop((std::mem::take(&mut self.removed), std::mem::take(&mut self.added)));
        dropped("states: chunk recipes' entries removed and added");
        drop(std::mem::take(&mut self.recipes));
        dropped("states: chunk recipes");
        drop((std::mem::take(&mut self.hashes), std::mem::take(&mut self.lens)));
        dropped("states: heads");
        drop(std::mem::take(&mut self.list_pool));
        dropped("states: chunk lists' pool");
        drop((std::mem::take(&mut self.lists), std::mem::take(&mut self.last)));
        dropped("states: chunk lists");
    }
}

impl Stored {
    /// Number of maps.
    pub(super) fn len(&self) -> usize {
        self.hashes.len()
    }

    pub(super) fn head(&self, i: usize) -> MapHead {
        MapHead { len: self.lens[i], hash: self.hashes[i] }
    }

    /// Map `i`'s content hash.
    pub(super) fn hash_of(&self, i: usize) -> u64 {
        self.hashes[i]
    }

    /// The list stored whole that map `i`'s list is built from (at most
    /// [`LIST_CHAIN`] lists back).
    pub(super) fn whole_list_of(&self, i: usize) -> usize {
        (0..=i).rev().find(|k| self.lists[*k].whole()).unwrap_or(0)
    }

    /// Where map `i`'s run of the list pool starts.
    fn run_start(&self, i: usize) -> usize {
        i.checked_sub(1).map_or(0, |p| self.lists[p].end as usize)
    }

    /// Map `i`'s chunk numbers: the list stored whole it is built from,
    /// then each change after it (at most [`LIST_CHAIN`]; their runs are
    /// one run of the pool, read at once).
    ///
    /// # Errors
    /// A row of the pool could not be read back, or is damaged.
    pub(super) fn chunk_numbers(&self, i: usize, pages: Option<&PageCache>) -> Result<Vec<u32>, PageError> {
        let whole = self.whole_list_of(i);
        let from = self.run_start(whole);
        let runs = self.list_pool.read(from..self.lists[i].end as usize, pages)?;
        let run = |k: usize| &runs[self.run_start(k) - from..self.lists[k].end as usize - from];
        let mut list = run(whole).to_vec();
        let mut next = Vec::with_capacity(list.len() + 2);
        for k in whole + 1..=i {
            let l = self.lists[k];
            let (front, back) = (l.keep_front as usize, l.keep_back as usize);
            if front + back > list.len() {
                return Err(PageError::Corrupt {
                    table: Table::StatePools,
                    key: format!("(state {k}'s chunk list, keeping more chunks than the list before has)"),
                });
            }
            next.clear();
            next.extend_from_slice(&list[..front]);
            next.extend_from_slice(run(k));
            next.extend_from_slice(&list[list.len() - back..]);
            std::mem::swap(&mut list, &mut next);
        }
        Ok(list)
    }

    /// Appends the next map's chunk list (its numbers checked by the
    /// caller): as its change against the list before when that is
    /// smaller and fewer than [`LIST_CHAIN`] changes from one stored whole.
    pub(super) fn push_list(&mut self, numbers: &[u32]) {
        let prev = &self.last;
        let p = numbers.iter().zip(prev).take_while(|(a, b)| a == b).count();
        let q = numbers[p..].iter().rev().zip(prev[p..].iter().rev()).take_while(|(a, b)| a == b).count();
        // Changes from the list stored whole it would be built from.
        let depth = match self.lists.len() {
            0 => LIST_CHAIN,
            n => (n - 1 - self.whole_list_of(n - 1)) as u32 + 1,
        };
        let middle = &numbers[p..numbers.len() - q];
        let keeps = u16::try_from(p).ok().zip(u16::try_from(q).ok());
        let list = match keeps {
            Some((p, q)) if depth < LIST_CHAIN && middle.len() + 2 < numbers.len() => {
                self.list_pool.extend(middle);
                List { keep_front: p, keep_back: q, end: 0 }
            }
            _ => {
                self.list_pool.extend(numbers);
                List { keep_front: 0, keep_back: 0, end: 0 }
            }
        };
        let end = u32::try_from(self.list_pool.len()).expect("fewer than 2^32 chunk references in a room's states");
        grow(&mut self.lists, 1);
        self.lists.push(List { end, ..list });
        self.last.clear();
        self.last.extend_from_slice(numbers);
    }

    /// Map `i`, built on first use (its numbers were checked when stored).
    ///
    /// # Errors
    /// A row of the pools could not be read back, or is damaged.
    pub(super) fn map(&self, i: usize, pages: Option<&PageCache>) -> Result<&StateMap, PageError> {
        if let Some(m) = self.maps.get(i) {
            return Ok(m);
        }
        let numbers = self.chunk_numbers(i, pages)?;
        let mut chunks = Vec::with_capacity(numbers.len());
        for n in numbers {
            chunks.push(Arc::clone(self.chunk(n, pages)?));
        }
        Ok(self.maps.get_or_init(i, || {
            let MapHead { len, hash } = self.head(i);
            let bits = super::chunk_bits(len as usize);
            let mut built = self.built.borrow_mut();
            built.maps.push(i as u32);
            built.bytes += map_bytes(chunks.len());
            Box::new(StateMap { chunks: chunks.into(), len: len as usize, hash, bits })
        }))
    }

    /// The entry at `probe`'s key in map `i`, reading only the chunks a
    /// binary search over its chunk list visits (a built map is read as it
    /// is): one key of a large state costs O(log chunks) chunk builds, not
    /// the whole state.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub(super) fn lookup(&self, i: usize, probe: u64, pages: Option<&PageCache>) -> Result<Option<u64>, PageError> {
        if let Some(m) = self.maps.get(i) {
            return Ok(m.get_packed(probe));
        }
        let numbers = self.chunk_numbers(i, pages)?;
        // As `StateMap::chunk_for`: the first chunk whose last entry is at
        // or past the probe.
        let (mut at, mut end) = (0, numbers.len());
        while at < end {
            let mid = (at + end) / 2;
            if self.chunk(numbers[mid], pages)?.last().is_some_and(|l| *l < probe) {
                at = mid + 1;
            } else {
                end = mid;
            }
        }
        let Some(n) = numbers.get(at) else { return Ok(None) };
        let c = self.chunk(*n, pages)?;
        let j = c.partition_point(|x| *x < probe);
        Ok(c.get(j).copied())
    }

    /// Chunk `n`, built on first use.
    ///
    /// # Errors
    /// A row of the pools could not be read back, or is damaged.
    pub(super) fn chunk(&self, n: u32, pages: Option<&PageCache>) -> Result<&Arc<[u64]>, PageError> {
        let cell = self.chunks.get(n as usize).ok_or_else(|| no_such_chunk(n))?;
        if let Some(c) = cell.get() {
            return Ok(c);
        }
        let c = self.build_chunk(n, pages)?;
        Ok(cell.get_or_init(|| {
            let mut built = self.built.borrow_mut();
            built.by_address.insert(address(&c), n);
            built.by_content.entry(chunk_hash(&c)).or_insert(n);
            if let Some(first) = c.first() {
                built.by_first.entry((first >> 32) as u32).or_insert(n);
            }
            built.chunks.push(n);
            built.bytes += chunk_bytes(&c);
            Box::new(c)
        }))
    }

    /// Chunk `n`'s removed positions and added entries.
    ///
    /// # Errors
    /// A row of the pools could not be read back, or is damaged.
    pub(super) fn lists(&self, n: u32, pages: Option<&PageCache>) -> Result<Change<'_>, PageError> {
        let r = &self.recipes[n as usize];
        let (removed_from, added_from) = match n.checked_sub(1) {
            Some(p) => (self.recipes[p as usize].removed_end, self.recipes[p as usize].added_end),
            None => (0, 0),
        };
        Ok((
            self.removed.read(removed_from as usize..r.removed_end as usize, pages)?,
            self.added.read(added_from as usize..r.added_end as usize, pages)?,
        ))
    }

    /// Chunk `n`'s entries: from the nearest built chunk or whole chunk
    /// back along its bases, its changes applied in order (each recipe was
    /// checked when stored, and the chain is at most [`MAX_CHAIN`] long).
    fn build_chunk(&self, n: u32, pages: Option<&PageCache>) -> Result<Arc<[u64]>, PageError> {
        let mut changes = Vec::new();
        let mut at = n;
        let mut entries: Vec<u64> = loop {
            if let Some(built) = self.chunks[at as usize].get() {
                break built.to_vec();
            }
            let r = &self.recipes[at as usize];
            if r.base == WHOLE {
                break self.lists(at, pages)?.1.into_owned();
            }
            changes.push(at);
            at = r.base;
        };
        let mut next = Vec::new();
        for c in changes.iter().rev() {
            let (removed, added) = self.lists(*c, pages)?;
            apply(&entries, &removed, &added, &mut next);
            std::mem::swap(&mut entries, &mut next);
        }
        Ok(Arc::from(entries))
    }

    /// Makes room for `chunks` more chunks and `maps` more maps (a read
    /// back knows its counts: no vector is grown twice).
    pub(super) fn reserve(&mut self, chunks: usize, maps: usize) {
        self.recipes.reserve_exact(chunks);
        self.chunks.reserve_exact(chunks);
        self.hashes.reserve_exact(maps);
        self.lens.reserve_exact(maps);
        self.lists.reserve_exact(maps);
        self.maps.reserve(maps);
    }

    /// How many changes chunk `n` is from the chunk stored whole it is
    /// built from (its bases walked: at most [`MAX_CHAIN`]).
    pub(super) fn depth_of(&self, n: u32) -> u32 {
        let mut depth = 0;
        let mut at = self.recipes[n as usize].base;
        while at != WHOLE {
            depth += 1;
            at = self.recipes[at as usize].base;
        }
        depth
    }

    /// Appends a chunk's recipe (checked by the caller).
    pub(super) fn push_recipe(&mut self, base: u32, removed: &[u32], added: &[u64]) -> Result<(), &'static str> {
        let len = match base {
            WHOLE => added.len(),
            b => self.recipes[b as usize].len as usize - removed.len() + added.len(),
        };
        grow(&mut self.recipes, 1);
        grow(&mut self.chunks, 1);
        self.removed.extend(removed);
        self.added.extend(added);
        let end = |l: usize| u32::try_from(l).map_err(|_| "state chunks past 2^32 entries");
        self.recipes.push(Recipe {
            base,
            len: end(len)?,
            removed_end: end(self.removed.len())?,
            added_end: end(self.added.len())?,
        });
        self.chunks.push(OnceCell::new());
        Ok(())
    }

    /// Appends a chunk's recipe as read back from an image (checked by the
    /// reader; its values are in the pools already).
    pub(super) fn push_recipe_as(&mut self, recipe: Recipe) {
        self.recipes.push(recipe);
        self.chunks.push(OnceCell::new());
    }

    /// Appends a map's chunk list as read back from an image (checked by
    /// the reader; its run is in the pool already).
    pub(super) fn push_list_as(&mut self, list: List) {
        self.lists.push(list);
    }

    /// Appends a map's head (after its list, [`push_list`](Self::push_list)).
    pub(super) fn push_head(&mut self, head: MapHead) {
        grow(&mut self.hashes, 1);
        grow(&mut self.lens, 1);
        self.hashes.push(head.hash);
        self.lens.push(head.len);
        self.maps.push_empty();
    }

    /// Numbers `map`'s chunks, storing those new to the room, and stores
    /// the map, built, as the next one. A chunk equal to a stored one is
    /// replaced by it. Never fails: a chunk it cannot read back to compare
    /// gets a number of its own (costing only sharing), a base it cannot
    /// read back is not used (the chunk is stored whole).
    pub(super) fn push_map(&mut self, map: StateMap, pages: Option<&PageCache>) {
        let mut numbers = Vec::with_capacity(map.chunks.len());
        let mut replaced: Option<Vec<Arc<[u64]>>> = None;
        for (i, c) in map.chunks.iter().enumerate() {
            if let Some(n) = self.built.get_mut().by_address.get(&address(c)) {
                numbers.push(*n);
                continue;
            }
            let hash = chunk_hash(c);
            let same = self.built.get_mut().by_content.get(&hash).copied().and_then(|n| {
                let built = self.chunk(n, pages).ok().filter(|b| ***b == **c)?;
                Some((n, Arc::clone(built)))
            });
            match same {
                Some((n, built)) => {
                    replaced.get_or_insert_with(|| map.chunks.to_vec())[i] = built;
                    numbers.push(n);
                }
                None => numbers.push(self.push_chunk(c, hash, pages)),
            }
        }
        let map = match replaced {
            Some(chunks) => StateMap { chunks: chunks.into(), ..map },
            None => map,
        };
        self.push_list(&numbers);
        let len = u32::try_from(map.len).expect("a state has fewer than 2^32 entries (its keys are u32)");
        self.push_head(MapHead { len, hash: map.hash });
        let i = self.len() - 1;
        let built = self.built.get_mut();
        built.maps.push(i as u32);
        built.bytes += map_bytes(map.chunks.len());
        let _ = self.maps.get_or_init(i, || Box::new(map));
    }

    /// Stores a chunk new to the room (as its change against the last
    /// chunk with its first key, when that is small) and keeps it built.
    fn push_chunk(&mut self, c: &Arc<[u64]>, hash: u64, pages: Option<&PageCache>) -> u32 {
        let n = self.recipes.len() as u32;
        // (A map's chunks are never empty: `StateMap` drops a chunk emptied.)
        let first = c.first().map_or(0, |x| (x >> 32) as u32);
        let base = self.built.get_mut().by_first.get(&first).copied().filter(|b| self.depth_of(*b) < MAX_CHAIN);
        let change = base.and_then(|b| Some((b, delta(self.chunk(b, pages).ok()?, c))));
        let stored = match change {
            Some((b, (removed, added))) if removed.len() * 4 + added.len() * 8 + 8 < c.len() * 4 => {
                self.push_recipe(b, &removed, &added)
            }
            _ => self.push_recipe(WHOLE, &[], c),
        };
        stored.expect("a room's state chunks hold fewer than 2^32 entries");
        let _ = self.chunks[n as usize].set(Box::new(Arc::clone(c)));
        let built = self.built.get_mut();
        built.by_address.insert(address(c), n);
        built.by_content.entry(hash).or_insert(n);
        built.by_first.insert(first, n);
        built.chunks.push(n);
        built.bytes += chunk_bytes(c);
        n
    }

    /// Writes every full segment of the pools as a row of the page store
    /// and lets go of its values: only when no batch is open (a rollback
    /// never reaches a row). The rows written.
    ///
    /// # Errors
    /// A row could not be written (the segment stays held, and is tried
    /// again at the next call).
    pub(super) fn page(&mut self, pages: &mut PageCache) -> Result<usize, PageError> {
        Ok(self.removed.page(pages)? + self.added.page(pages)? + self.list_pool.page(pages)?)
    }

    /// Bytes of the states and chunks built.
    pub(super) fn built_bytes(&self) -> usize {
        self.built.borrow().bytes
    }

    /// Drops built states and chunks once they hold more than `budget`
    /// bytes (or twice what the last trim could not drop): every built
    /// state but the [`KEEP_NEWEST`] newest, then every chunk only the
    /// cache holds.
    pub(super) fn trim(&mut self, budget: usize) {
        let built = self.built.get_mut();
        if built.bytes <= budget.max(2 * self.floor) {
            return;
        }
        let keep_from = self.hashes.len().saturating_sub(KEEP_NEWEST);
        let mut bytes = 0;
        let maps = &mut self.maps;
        built.maps.retain(|i| {
            let i = *i as usize;
            if i >= keep_from {
                bytes += maps.get(i).map_or(0, |m| map_bytes(m.chunks.len()));
                return true;
            }
            maps.take(i);
            false
        });
        let chunks = &mut self.chunks;
        let by_address = &mut built.by_address;
        built.chunks.retain(|n| {
            let cell = &mut chunks[*n as usize];
            match cell.get() {
                Some(c) if Arc::strong_count(c) == 1 => {
                    by_address.remove(&address(c));
                    cell.take();
                    false
                }
                Some(c) => {
                    bytes += chunk_bytes(c);
                    true
                }
                None => false,
            }
        });
        built.bytes = bytes;
        self.floor = bytes;
    }

    /// The extent of the stored states now, for [`truncate`](Self::truncate).
    pub(super) fn mark(&self) -> Mark {
        Mark { maps: self.len(), chunks: self.recipes.len(), last: self.last.clone() }
    }

    /// Forgets the maps and chunks stored since `mark` (chunks are numbered
    /// in the order the maps that hold them were stored), reading nothing:
    /// none of their values is in a row ([`page`](Self::page) runs outside
    /// batches).
    pub(super) fn truncate(&mut self, mark: &Mark) {
        let len = mark.maps;
        if len >= self.len() {
            return;
        }
        self.hashes.truncate(len);
        self.lens.truncate(len);
        self.lists.truncate(len);
        self.list_pool.truncate(self.lists.last().map_or(0, |l| l.end as usize));
        self.last.clone_from(&mark.last);
        self.maps.truncate(len);
        let kept = mark.chunks;
        if let Some(last) = kept.checked_sub(1).map(|l| self.recipes[l]) {
            self.removed.truncate(last.removed_end as usize);
            self.added.truncate(last.added_end as usize);
        } else {
            self.removed.truncate(0);
            self.added.truncate(0);
        }
        self.recipes.truncate(kept);
        self.chunks.truncate(kept);
        let built = self.built.get_mut();
        built.by_address.retain(|_, n| (*n as usize) < kept);
        built.by_content.retain(|_, n| (*n as usize) < kept);
        built.by_first.retain(|_, n| (*n as usize) < kept);
        built.chunks.retain(|n| (*n as usize) < kept);
        built.maps.retain(|i| (*i as usize) < len);
        built.bytes =
            built.chunks.iter().filter_map(|n| self.chunks[*n as usize].get()).map(|c| chunk_bytes(c)).sum::<usize>()
                + built
                    .maps
                    .iter()
                    .filter_map(|i| self.maps.get(*i as usize))
                    .map(|m| map_bytes(m.chunks.len()))
                    .sum::<usize>();
    }

    /// The numbers of the built chunks (tests).
    #[cfg(test)]
    pub(super) fn built_chunks(&self) -> usize {
        self.chunks.iter().filter(|c| c.get().is_some()).count()
    }

    /// The number of built maps (tests).
    #[cfg(test)]
    pub(super) fn built_maps(&self) -> usize {
        (0..self.maps.len()).filter(|i| self.maps.get(*i).is_some()).count()
    }
}

/// `c` against `base` (both sorted by key): the positions in `base` of the
/// entries `c` lacks, and the entries of `c` that `base` lacks.
pub(super) fn delta(base: &[u64], c: &[u64]) -> (Vec<u32>, Vec<u64>) {
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < base.len() || j < c.len() {
        match (base.get(i), c.get(j)) {
            (Some(b), Some(x)) if b == x => {
                i += 1;
                j += 1;
            }
            (Some(b), Some(x)) if b >> 32 == x >> 32 => {
                removed.push(i as u32);
                added.push(*x);
                i += 1;
                j += 1;
            }
            (Some(b), Some(x)) if b >> 32 < x >> 32 => {
                removed.push(i as u32);
                i += 1;
            }
            (Some(_), None) => {
                removed.push(i as u32);
                i += 1;
            }
            (_, Some(x)) => {
                added.push(*x);
                j += 1;
            }
            (None, None) => unreachable!("the loop runs while either has entries"),
        }
    }
    (removed, added)
}

/// Whether `removed` names entries of a chunk of `len`, each once, in order.
pub(super) fn removes_entries_there(removed: &[u32], len: u32) -> bool {
    removed.windows(2).all(|w| w[0] < w[1]) && removed.last().is_none_or(|r| *r < len)
}

/// `base` without the entries at `removed` (ascending positions, checked
/// with [`removes_entries_there`]), merged with `added` by key, into `kept`
/// (cleared first).
pub(super) fn apply(base: &[u64], removed: &[u32], added: &[u64], kept: &mut Vec<u64>) {
    kept.clear();
    kept.reserve(base.len().saturating_sub(removed.len()) + added.len());
    let mut gone = removed.iter().peekable();
    let mut add = added.iter().peekable();
    for (i, x) in base.iter().enumerate() {
        if gone.peek() == Some(&&(i as u32)) {
            gone.next();
            continue;
        }
        while let Some(a) = add.next_if(|a| **a >> 32 < *x >> 32) {
            kept.push(*a);
        }
        kept.push(*x);
    }
    kept.extend(add);
}
