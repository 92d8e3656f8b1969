//! A room written as an image into its page store, and read back
//! ([`crate::image`]): what the room holds besides caches, section by
//! section, each read back with its indexes checked.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::auth_chain::AuthChainIndex;
use crate::event::{Events, RefBounds};
use crate::ids::{EventIdx, Name};
use crate::image::{self, index, ImageError, ImageInfo, Reader, Writer, FORMAT};
use crate::pages::{PageCache, PageError, PageStore, Table};
use crate::power_levels::LevelChunkPool;
use crate::room_version::RoomVersionRules;
use crate::state_res::MainlineCache;
use crate::state_set::{StateSetId, StateSets};

use super::{Caches, Deferred, IdIndex, Redactions, Resolutions, Room};

const MAGIC: &[u8; 8] = b"rdimage\0";

impl Room {
    /// Writes the room into its page store as an image taken at the host's
    /// log position `log_length` (the number of records that give this
    /// room), replacing the previous image. Between batches only, and only
    /// for a room whose PDUs are paged ([`set_pages`](Self::set_pages)).
    /// Once it is committed, the rows of the ID index's buckets that merges
    /// replaced since the last image are deleted (no image names them).
    ///
    /// # Errors
    /// [`ImageError::NotPaged`], [`ImageError::BatchOpen`], or the store
    /// failed (the previous image is then still the current one).
    pub fn save_image(&mut self, log_length: u64) -> Result<ImageInfo, ImageError> {
        if self.checkpoint_open {
            return Err(ImageError::BatchOpen);
        }
        if self.events.pages().is_none() {
            return Err(ImageError::NotPaged);
        }
        // The image names the rows of the full blocks' IDs: each written.
        self.events.settle_ids()?;
        let mut pages = self.events.take_pages().ok_or(ImageError::NotPaged)?;
        let result = self.write_into(pages.store_mut(), log_length);
        if result.is_ok() {
            self.by_id.sweep(pages.store_mut());
            self.sweep_rows(pages.store_mut());
        }
        self.events.restore_pages(pages);
        result
    }

    /// Deletes the rows of IDs, of blocks, of the ID index's buckets and of
    /// the states' pools that the room does not name, once an image naming those it names is
    /// committed: rows of the room this one was rebuilt or restored from
    /// (which numbered its events otherwise; it has been replaced: a room
    /// restored beside it writes no image before), and rows a write that
    /// failed halfway left. Only with a store that lists its keys; a key
    /// that cannot be deleted stays (tried again at the next image).
    fn sweep_rows(&self, store: &mut dyn PageStore) {
        for table in [Table::Ids, Table::Blocks, Table::IdBuckets, Table::StatePools] {
            let Ok(Some(keys)) = store.keys(table) else { continue };
            let named = match table {
                Table::StatePools => self.states.named_rows(),
                Table::IdBuckets => self.by_id.named_rows(),
                _ => self.events.named_rows(table),
            };
            let named: HashSet<String> = named.iter().map(crate::event::row_key_text).collect();
            for key in keys.iter().filter(|k| !named.contains(*k)) {
                let _ = store.delete(table, key);
            }
        }
    }

    /// The room's page store, the room given up (to read the room back from
    /// its image, or to hand the store on); `None` when its PDUs are not paged.
    pub fn into_page_store(mut self) -> Option<Box<dyn PageStore>> {
        self.events.take_pages().map(PageCache::into_store)
    }

    fn write_into(&self, store: &mut dyn PageStore, log_length: u64) -> Result<ImageInfo, ImageError> {
        let previous = image::info(store).ok().flatten();
        let generation = previous.as_ref().map_or(1, |p| p.generation + 1);
        let mut w = Writer::new(store, generation);
        if let Err(e) = self.write_sections(&mut w) {
            let parts = w.finish().map_or_else(|(_, parts)| parts, |(parts, _)| parts);
            image::discard(store, generation, parts);
            return Err(e.into());
        }
        let (parts, bytes) = match w.finish() {
            Ok(done) => done,
            Err((e, parts)) => {
                image::discard(store, generation, parts);
                return Err(e.into());
            }
        };
        let info = ImageInfo {
            format: FORMAT,
            generation,
            parts,
            bytes,
            log_length,
            events: self.events.len() as u64,
            room_version: self.rules.id.to_owned(),
        };
        if let Err(e) = image::commit(store, &info, previous.as_ref()) {
            image::discard(store, generation, parts);
            return Err(e.into());
        }
        Ok(info)
    }

    fn write_sections(&self, w: &mut Writer<'_>) -> Result<(), PageError> {
        w.raw(MAGIC);
        w.str(self.rules.id);
        w.opt_str(self.room_id.as_deref());
        // Names: the interned set first (flag 1), then any other name an
        // event or a state key holds (flag 0), read without reading rows.
        let mut names: Vec<Name> = self.strings.iter().cloned().collect();
        let interned = names.len();
        let mut seen: std::collections::HashSet<Name> = names.iter().cloned().collect();
        let more =
            self.events.event_names().cloned().chain(self.key_names.iter().flat_map(|(t, s)| [t.clone(), s.clone()]));
        for n in more {
            if seen.insert(n.clone()) {
                names.push(n);
            }
        }
        drop(seen);
        let numbers: HashMap<&str, u32> = names.iter().enumerate().map(|(i, n)| (&**n, i as u32)).collect();
        w.len(names.len());
        for (i, n) in names.iter().enumerate() {
            w.u8(u8::from(i < interned));
            w.str(n);
        }
        let number = |s: &str| numbers.get(s).copied();
        self.events.write_image(w, &number)?;
        self.by_id.write_image(w);
        let name = |n: &Name| numbers[&**n];
        w.u32s(self.key_names.iter().flat_map(|(t, s)| [name(t), name(s)]).collect::<Vec<_>>().into_iter());
        self.states.write_image(w);
        self.auth_index.write_image(w);
        let mut rejections: Vec<(&EventIdx, &Box<str>)> = self.rejections.iter().collect();
        rejections.sort();
        w.len(rejections.len());
        for (i, why) in rejections {
            w.u32(i.0);
            w.str(why);
        }
        self.resolutions.write_image(w);
        w.u64(self.referenced.len() as u64);
        w.bytes(&self.referenced.to_bytes());
        w.u32s(self.extremities.iter().flat_map(|(e, s)| [e.0, s.0]).collect::<Vec<_>>().into_iter());
        w.u8(u8::from(self.timeline_min_depth.is_some()));
        w.i64(self.timeline_min_depth.unwrap_or(0));
        let mut applied: Vec<_> = self.redactions.applied.iter().collect();
        applied.sort();
        w.u32s(applied.iter().flat_map(|(t, r)| [t.0, r.0]).collect::<Vec<_>>().into_iter());
        let mut waiting: Vec<_> = self.redactions.pending.iter().collect();
        waiting.sort_by(|a, b| a.0.cmp(b.0));
        w.len(waiting.len());
        for (target, by) in waiting {
            w.str(target);
            w.u32s(by.iter().map(|e| e.0));
        }
        w.u32s(self.pending.iter().map(|e| e.0));
        let mut unplaced: Vec<_> = self.unplaced_prevs.iter().collect();
        unplaced.sort_by_key(|(e, _)| **e);
        w.len(unplaced.len());
        for (e, prevs) in unplaced {
            w.u32(e.0);
            w.strs(prevs);
        }
        let mut deferred: Vec<_> = self.deferred.iter().collect();
        deferred.sort_by(|a, b| a.0.cmp(b.0));
        w.len(deferred.len());
        for (id, d) in deferred {
            w.str(id);
            w.strs(&d.prev_events);
            w.strs(&d.auth_events);
            w.i64(d.depth);
        }
        w.raw(MAGIC);
        Ok(())
    }

    /// Reads the room back from the image in `store` (the room's page
    /// store, which then holds its PDUs behind a cache of `cache_bytes`;
    /// as many bytes of states are kept built).
    /// `Ok(None)` when the store holds no image.
    ///
    /// # Errors
    /// The store failed, or the image is of another format or corrupt: the
    /// host replays its log instead.
    pub fn open_image(store: Box<dyn PageStore>, cache_bytes: usize) -> Result<Option<(Room, ImageInfo)>, ImageError> {
        let Some(info) = image::info(&*store)? else { return Ok(None) };
        if info.format != FORMAT {
            return Err(ImageError::Format(info.format));
        }
        let room = {
            let mut r = Reader::new(&*store, &info);
            let parts = read_sections(&mut r)?;
            r.finish()?;
            parts
        };
        let mut room = room.into_room(PageCache::new(store, Table::Pdu, cache_bytes))?;
        room.states.set_budget(cache_bytes);
        room.events.set_budget(Some(crate::event::table_budget(cache_bytes)));
        if room.events.len() as u64 != info.events || room.rules.id != info.room_version {
            return Err(ImageError::Corrupt("the image does not match its meta".into()));
        }
        Ok(Some((room, info)))
    }
}

/// The sections of an image, read; the events' texts are attached to their
/// page cache last.
struct Sections {
    rules: &'static RoomVersionRules,
    room_id: Option<String>,
    names: Vec<Name>,
    interned: usize,
    level_chunks: LevelChunkPool,
    /// With a placeholder page cache until [`Sections::into_room`].
    events: Events,
    /// What its events refer to in the tables read after it.
    event_refs: RefBounds,
    by_id: IdIndex,
    key_names: Vec<(Name, Name)>,
    states: StateSets,
    auth_index: AuthChainIndex,
    rejections: HashMap<EventIdx, Box<str>>,
    resolutions: Resolutions,
    referenced: super::bits::Bits,
    extremities: BTreeMap<EventIdx, StateSetId>,
    timeline_min_depth: Option<i64>,
    redactions: Redactions,
    pending: BTreeSet<EventIdx>,
    unplaced_prevs: HashMap<EventIdx, Box<[Box<str>]>>,
    deferred: HashMap<Box<str>, Deferred>,
}

fn corrupt(what: impl Into<String>) -> ImageError {
    ImageError::Corrupt(what.into())
}

fn read_sections(r: &mut Reader<'_>) -> Result<Sections, ImageError> {
    let magic = |r: &mut Reader<'_>| -> Result<(), ImageError> {
        let m: Vec<u8> = (0..MAGIC.len()).map(|_| r.u8()).collect::<Result<_, _>>()?;
        if m != MAGIC {
            return Err(corrupt("a section marker is wrong"));
        }
        Ok(())
    };
    magic(r)?;
    let version = r.str()?;
    let rules = RoomVersionRules::supported(&version).map_err(|e| corrupt(e.to_string()))?;
    let room_id = r.opt_str()?;
    let n_names = r.len(9)?;
    let mut names = Vec::with_capacity(n_names);
    let mut interned = 0;
    for i in 0..n_names {
        let flag = r.u8()?;
        if flag == 1 && i != interned || flag > 1 {
            return Err(corrupt("the name table is out of order"));
        }
        interned += usize::from(flag);
        names.push(Name::new(&r.str()?));
    }
    // The event table refers to its page cache, attached once all is read.
    let placeholder = PageCache::new(Box::new(crate::pages::MemoryPages::new()), Table::Pdu, 0);
    let mut level_chunks = LevelChunkPool::default();
    let (events, event_refs) = Events::read_image(r, &names, placeholder, &mut level_chunks)?;
    let events_len = events.len();
    let by_id = IdIndex::read_image(r, events_len)?;
    let flat = r.u32s()?;
    if flat.len() % 2 != 0 {
        return Err(corrupt("the state keys do not pair up"));
    }
    let key_names = flat
        .chunks(2)
        .map(|p| {
            Ok((
                names[index(p[0], n_names, "a name")? as usize].clone(),
                names[index(p[1], n_names, "a name")? as usize].clone(),
            ))
        })
        .collect::<Result<Vec<_>, ImageError>>()?;
    let states = StateSets::read_image(r, key_names.len(), events_len)?;
    let auth_index = AuthChainIndex::read_image(r, events_len)?;
    let ev = |v: u32| index(v, events_len, "an event").map(EventIdx);
    let n = r.len(12)?;
    let mut rejections = HashMap::with_capacity(n);
    for _ in 0..n {
        rejections.insert(ev(r.u32()?)?, r.str()?.into_boxed_str());
    }
    let resolutions = Resolutions::read_image(r, states.len(), key_names.len())?;
    let n_referenced = r.u64()?;
    let referenced = super::bits::Bits::from_bytes(&r.bytes()?, events_len)
        .filter(|_| n_referenced == events_len as u64)
        .ok_or_else(|| corrupt("the referenced flags do not match the events"))?;
    let flat = r.u32s()?;
    if flat.len() % 2 != 0 {
        return Err(corrupt("the forward extremities do not pair up with their states"));
    }
    let extremities = flat
        .chunks(2)
        .map(|p| Ok((ev(p[0])?, StateSetId(index(p[1], states.len(), "a state")?))))
        .collect::<Result<BTreeMap<_, _>, ImageError>>()?;
    let timeline_min_depth = match (r.u8()?, r.i64()?) {
        (0, _) => None,
        (1, d) => Some(d),
        _ => return Err(corrupt("the timeline's least depth is neither set nor unset")),
    };
    let applied = r.u32s()?;
    if applied.len() % 2 != 0 {
        return Err(corrupt("the applied redactions do not pair up"));
    }
    let mut redactions = Redactions::default();
    for p in applied.chunks(2) {
        redactions.applied.insert(ev(p[0])?, ev(p[1])?);
    }
    let n = r.len(16)?;
    for _ in 0..n {
        let target = Name::new(&r.str()?);
        let by = r.u32s()?.into_iter().map(ev).collect::<Result<Vec<_>, _>>()?;
        redactions.pending.insert(target, by);
    }
    let pending = r.u32s()?.into_iter().map(ev).collect::<Result<BTreeSet<_>, _>>()?;
    let n = r.len(12)?;
    let mut unplaced_prevs = HashMap::with_capacity(n);
    for _ in 0..n {
        let e = ev(r.u32()?)?;
        unplaced_prevs.insert(e, r.strs()?.into_boxed_slice());
    }
    let n = r.len(32)?;
    let mut deferred = HashMap::with_capacity(n);
    for _ in 0..n {
        let id = r.str()?.into_boxed_str();
        let prev_events = r.strs()?.into_boxed_slice();
        let auth_events = r.strs()?.into_boxed_slice();
        deferred.insert(id, Deferred { prev_events, auth_events, depth: r.i64()? });
    }
    magic(r)?;
    Ok(Sections {
        rules,
        room_id,
        names,
        interned,
        level_chunks,
        events,
        event_refs,
        by_id,
        key_names,
        states,
        auth_index,
        rejections,
        resolutions,
        referenced,
        extremities,
        timeline_min_depth,
        redactions,
        pending,
        unplaced_prevs,
        deferred,
    })
}

impl Sections {
    /// The room, once every index between the sections is checked.
    fn into_room(self, pages: PageCache) -> Result<Room, ImageError> {
        let mut events = self.events;
        events.restore_pages(pages);
        let (n_states, n_nodes, n_keys) = (self.states.len(), self.auth_index.len(), self.key_names.len());
        let refs = self.event_refs;
        if refs.states as usize > n_states {
            return Err(corrupt("an event's state is not in the image"));
        }
        if refs.keys as usize > n_keys {
            return Err(corrupt("an event's state key is not in the image"));
        }
        if refs.nodes as usize > n_nodes {
            return Err(corrupt("an event's auth node is not in the image"));
        }
        let strings: HashSet<Name> = self.names.into_iter().take(self.interned).collect();
        let keys = super::KeyIndex::of(&self.key_names);
        Ok(Room {
            rules: self.rules,
            room_id: self.room_id,
            events,
            by_id: self.by_id,
            rejections: self.rejections,
            strings,
            level_chunks: self.level_chunks,
            keys,
            key_names: self.key_names,
            states: self.states,
            auth_index: self.auth_index,
            resolutions: self.resolutions,
            mainlines: MainlineCache::default(),
            referenced: self.referenced,
            referenced_log: Vec::new(),
            checkpoint_open: false,
            extremities: self.extremities,
            timeline_min_depth: self.timeline_min_depth,
            dropped: Vec::new(),
            dropped_bytes: 0,
            dropped_total: 0,
            redactions: self.redactions,
            pending: self.pending,
            pending_log: Vec::new(),
            unplaced_prevs: self.unplaced_prevs,
            deferred: self.deferred,
            deferred_log: Vec::new(),
            new_records: Vec::new(),
            keep_records: true,
            caches: RefCell::new(Caches::default()),
        })
    }
}
