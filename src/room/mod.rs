//! One room: its stored events, their states, and the receipt pipeline.
//!
//! [`Room::ingest`] runs a received PDU through the spec's "Checks performed
//! on receipt of a PDU", in the reference server's order:
//!
//! 1. format checks for the room version ([`crate::pdu`]); a failure drops it;
//! 2. duplicate, `prev_events` ≤ 20 and `auth_events` ≤ 10, right room;
//! 3. signatures of the sender's server (and of the restricted-join
//!    authoriser's server); a failure drops it;
//! 4. the content hash; a mismatch keeps only the redacted form;
//! 5. every `prev_events` and `auth_events` entry must be stored; otherwise
//!    the PDU is dropped (a later resend can still succeed);
//! 6. the state before it: the states after its prev events, resolved when
//!    they differ;
//! 7. size limits, then the auth rules against its own auth events and
//!    against the state before it; a failure stores it as *rejected* (an
//!    error that is not an authorization failure drops it, as Synapse never
//!    stores such an event).
//!
//! An accepted state event extends the state; accepted events become forward
//! extremities until an accepted event lists them in `prev_events`.
//!
//! The room is split along the spec's seams:
//!
//! * `receipt`: the receipt checks ([`Room::ingest`] and its batch and
//!   prepared forms) and storing an event;
//! * `outcome`: what happened to a PDU ([`Outcome`], [`DropStage`]) and the
//!   bounded log of dropped PDUs;
//! * `state`: the room's states, their resolution, digests and auth chains;
//! * `redactions`: which redaction applies to which event when it is read;
//! * `outliers`: events outside the timeline (outliers, pending and deferred
//!   history events), remote states and the backward extremities;
//! * `checkpoint`: undoing a batch whose write failed ([`Checkpoint`]);
//! * `id_index`: the event ID → index map.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::auth_chain::AuthChainIndex;
pub use crate::event::IdText;
use crate::event::{Events, MemberFacts, PduText, StoredEvent};
use crate::ids::{EventIdx, Name};
use crate::pages::PageCache;
pub use crate::pages::{CacheStats, MemoryPages, PageError, PageStore, RestoreRows, Table};
pub use crate::placement::{EventRecord, LogRecord, Placement, RecordKind};
use crate::power_levels::{Level, LevelChunk, LevelChunkPool, LevelInterner};
use crate::room_version::{RoomVersionRules, UnsupportedRoomVersion};
pub use crate::signatures::{
    prepare_batch, verify_batch_signatures, verify_pdu_signatures, PreparedPdu, SIGNATURE_BATCH,
};
use crate::state_digest::{DigestCursors, KeyOrder};
use crate::state_res::MainlineCache;
use crate::state_set::{StateMap, StateSetId, StateSets};

mod bits;
mod checkpoint;
mod id_buckets;
mod id_index;
mod image;
mod key_index;
mod outcome;
mod outliers;
mod parts;
mod receipt;
mod redactions;
mod resolutions;
mod state;

pub use checkpoint::Checkpoint;
use id_index::IdIndex;
use key_index::KeyIndex;
pub use outcome::{
    bounded_reason, DropStage, DroppedEvent, Outcome, MAX_DROPPED_LOG, MAX_DROPPED_LOG_BYTES, MAX_REASON_BYTES,
};
use outliers::Deferred;
pub use receipt::{Verification, MAX_AUTH_EVENTS, MAX_ID_LEN, MAX_PDU_SIZE, MAX_PREV_EVENTS};
use redactions::Redactions;
use resolutions::Resolutions;
pub use state::{digest_of, ResolutionInfo, STATE_AUTH_CHAIN_CACHE};

/// A page store can be given only to an empty room.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PagesError {
    /// Events are stored already.
    #[error("a page store can be set only before any event is stored ({0} are)")]
    NotEmpty(usize),
}

/// A room's event DAG, states and indexes.
pub struct Room {
    rules: &'static RoomVersionRules,
    room_id: Option<String>,
    events: Events,
    by_id: IdIndex,
    rejections: HashMap<EventIdx, Box<str>>,
    strings: HashSet<Name>,
    /// The chunks of the power-level maps the room's events hold.
    level_chunks: LevelChunkPool,
    keys: KeyIndex,
    key_names: Vec<(Name, Name)>,
    states: StateSets,
    auth_index: AuthChainIndex,
    resolutions: Resolutions,
    mainlines: MainlineCache,
    referenced: bits::Bits,
    /// Prev events marked referenced since the open checkpoint (only kept
    /// while one is open, to undo them).
    referenced_log: Vec<EventIdx>,
    checkpoint_open: bool,
    extremities: BTreeMap<EventIdx, StateSetId>,
    /// The least depth of the timeline events (those stored not as
    /// outliers: an event's flag never changes once stored), kept as they
    /// are stored rather than found by reading every event.
    timeline_min_depth: Option<i64>,
    dropped: Vec<DroppedEvent>,
    /// Sum of the entries' [`DroppedEvent::weight`].
    dropped_bytes: usize,
    dropped_total: u64,
    redactions: Redactions,
    /// Timeline events whose prev events are not all placed yet (history
    /// being backfilled): stored as outliers until a rebuild places them.
    pending: BTreeSet<EventIdx>,
    /// Events made pending since the open checkpoint (to undo them).
    pending_log: Vec<EventIdx>,
    /// Prev events of pending events and of events placed with a remote
    /// state that are not placed: the backward extremities are among them.
    unplaced_prevs: HashMap<EventIdx, Box<[Box<str>]>>,
    /// History events logged before their auth events: event ID → their
    /// prev and auth event IDs (see [`Outcome::Deferred`]).
    deferred: HashMap<Box<str>, Deferred>,
    /// Events deferred since the open checkpoint (to undo them).
    deferred_log: Vec<Box<str>>,
    /// Records of what was stored since the last [`Room::take_records`].
    new_records: Vec<EventRecord>,
    /// Whether to keep them ([`Room::set_keep_records`]).
    keep_records: bool,
    caches: RefCell<Caches>,
}

#[derive(Default)]
struct Caches {
    digests: HashMap<StateSetId, [u8; 32]>,
    /// Recently answered `/state_ids` auth chains (at most [`STATE_AUTH_CHAIN_CACHE`]).
    state_auth_chains: VecDeque<(StateSetId, Arc<[EventIdx]>)>,
    current: Option<Arc<StateMap>>,
    /// [`Room::key_order`] and the number of keys it ordered.
    key_order: Option<(usize, Option<Arc<KeyOrder>>)>,
    /// Hasher states of the last state digests.
    digest_cursors: DigestCursors,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("room_version", &self.rules.id)
            .field("room_id", &self.room_id)
            .field("events", &self.events.len())
            .finish()
    }
}

/// A room's names and level-map chunks, for the facts of its events.
struct RoomInterner<'a> {
    strings: &'a mut HashSet<Name>,
    level_chunks: &'a mut LevelChunkPool,
}

impl LevelInterner for RoomInterner<'_> {
    fn name(&mut self, s: &str) -> Name {
        intern(self.strings, s)
    }
    fn chunk(&mut self, entries: &[(Name, Level)]) -> LevelChunk {
        self.level_chunks.chunk(entries)
    }
    fn member(&mut self, m: MemberFacts) -> Arc<MemberFacts> {
        self.level_chunks.member(m)
    }
}

fn intern(strings: &mut HashSet<Name>, s: &str) -> Name {
    if let Some(a) = strings.get(s) {
        return a.clone();
    }
    let a = Name::new(s);
    strings.insert(a.clone());
    a
}

impl Room {
    /// An empty room of a room version this engine hosts.
    pub fn new(room_version: &str) -> Result<Self, UnsupportedRoomVersion> {
        let rules = RoomVersionRules::supported(room_version)?;
        Ok(Self {
            rules,
            room_id: None,
            events: Events::default(),
            by_id: IdIndex::default(),
            rejections: HashMap::new(),
            strings: HashSet::new(),
            level_chunks: LevelChunkPool::default(),
            keys: KeyIndex::default(),
            key_names: Vec::new(),
            states: StateSets::new(),
            auth_index: AuthChainIndex::new(),
            resolutions: Resolutions::default(),
            mainlines: MainlineCache::default(),
            referenced: bits::Bits::default(),
            referenced_log: Vec::new(),
            checkpoint_open: false,
            extremities: BTreeMap::new(),
            timeline_min_depth: None,
            dropped: Vec::new(),
            dropped_bytes: 0,
            dropped_total: 0,
            redactions: Redactions::default(),
            pending: BTreeSet::new(),
            pending_log: Vec::new(),
            unplaced_prevs: HashMap::new(),
            deferred: HashMap::new(),
            deferred_log: Vec::new(),
            new_records: Vec::new(),
            keep_records: true,
            caches: RefCell::new(Caches::default()),
        })
    }

    /// The room version's rules.
    pub fn rules(&self) -> &'static RoomVersionRules {
        self.rules
    }

    /// The room ID, once an accepted create event is stored.
    pub fn room_id(&self) -> Option<&str> {
        self.room_id.as_deref()
    }

    /// Every stored event, in arrival order.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// A stored event's ID.
    ///
    /// # Errors
    /// The ID is paged (an event that is not a state event, with a page
    /// store) and the store failed to read it back.
    pub fn id(&self, idx: EventIdx) -> Result<IdText<'_>, PageError> {
        self.events.id_at(idx.ix())
    }

    /// A state event's ID, or that of an event stored since the last
    /// trim: the room holds those ([`Events::resident_id`]).
    pub fn state_id(&self, idx: EventIdx) -> &str {
        self.events.state_id(idx.ix())
    }

    /// A stored event's PDU, exactly as received.
    ///
    /// # Errors
    /// The PDU texts are paged ([`set_pages`](Self::set_pages)) and the page
    /// store failed to read this one back.
    pub fn raw(&self, idx: EventIdx) -> Result<PduText<'_>, PageError> {
        self.events.raw(self.event(idx)?)
    }

    /// Keeps the room's PDU texts in a page store behind a cache of
    /// `cache_bytes` from now on, instead of in memory, and as many bytes
    /// of built states ([`StateSets::set_budget`]) and of built blocks of
    /// the event table, the rest of which is kept packed
    /// ([`Events::set_budget`](crate::event::Events::set_budget)).
    ///
    /// # Errors
    /// [`PagesError::NotEmpty`] once events are stored.
    pub fn set_pages(&mut self, store: Box<dyn PageStore>, cache_bytes: usize) -> Result<(), PagesError> {
        if !self.events.is_empty() {
            return Err(PagesError::NotEmpty(self.events.len()));
        }
        self.events.set_pages(PageCache::new(store, Table::Pdu, cache_bytes));
        self.events.set_budget(Some(crate::event::table_budget(cache_bytes)));
        self.states.set_budget(cache_bytes);
        Ok(())
    }

    /// Drops the states, state chunks and event-table blocks built beyond
    /// the room's budget (that of its page cache, when it has a page store;
    /// ingest does this as it goes): a host calls it after queries, which
    /// build the states and blocks they read.
    pub fn trim_caches(&mut self) {
        self.trim_events();
        self.states.trim();
    }

    /// Trims the event table ([`Events::trim`](crate::event::Events::trim):
    /// rows of settled blocks written, blocks past the budget dropped), then
    /// moves the ID index's entries of settled messages to the page store
    /// when enough have gathered ([`IdIndex::page`](id_index::IdIndex)),
    /// and, between batches, the states' full pool segments
    /// ([`StateSets::page`](crate::state_set::StateSets::page)). A row not
    /// written is tried again at the next call.
    pub(crate) fn trim_events(&mut self) {
        self.events.trim();
        let _ = self.by_id.page(&mut self.events);
        self.page_states();
    }

    /// Writes the states' full pool segments as rows, unless a batch that
    /// may roll back is open (then at its [`release`](Self::release)).
    pub(crate) fn page_states(&mut self) {
        if !self.checkpoint_open {
            if let Some(pages) = self.events.pages_mut() {
                let _ = self.states.page(pages);
            }
        }
    }

    /// The ID index's entries held in memory and in the page store, the
    /// latter's buckets and Bloom filter bytes (for tests and benchmarks).
    #[doc(hidden)]
    pub fn id_index_footprint(&self) -> (usize, usize, (usize, usize)) {
        self.by_id.footprint()
    }

    /// See [`PageCache::set_restoring`] ([`crate::placement::restore_into`]).
    pub(crate) fn set_restoring_pages(&mut self, restoring: Option<RestoreRows>) {
        self.events.set_restoring_pages(restoring);
    }

    /// The page cache's counters, when the PDU texts are paged.
    pub fn page_stats(&self) -> Option<CacheStats> {
        self.events.pages().map(PageCache::stats)
    }

    /// A stored event's `prev_events`.
    ///
    /// # Errors
    /// As [`event`](Self::event).
    pub fn prev_events(&self, idx: EventIdx) -> Result<&[EventIdx], PageError> {
        self.events.prev_events(self.event(idx)?)
    }

    /// A stored event's auth events (room v12: with the create event).
    ///
    /// # Errors
    /// As [`event`](Self::event).
    pub fn auth_events(&self, idx: EventIdx) -> Result<&[EventIdx], PageError> {
        self.events.auth_events(self.event(idx)?)
    }

    /// Why a stored event was rejected.
    pub fn rejection(&self, idx: EventIdx) -> Option<&str> {
        self.rejections.get(&idx).map(|r| &**r)
    }

    /// A stored event (its block read back from the page store if needed:
    /// the blocks of messages are paged).
    ///
    /// # Errors
    /// The page store failed to read its block back.
    pub fn event(&self, idx: EventIdx) -> Result<&StoredEvent, PageError> {
        self.events.event(idx.ix())
    }

    /// A stored state event, or any event of a block the room holds built
    /// (the open block, a batch not trimmed yet), read infallibly
    /// ([`Events::state_event`]): what the auth checks, state resolution
    /// and visibility read (the events of states and auth chains).
    ///
    /// # Panics
    /// If `idx` is a message of a paged block that cannot be read back.
    pub fn state_event(&self, idx: EventIdx) -> &StoredEvent {
        self.events.state_event(idx.ix())
    }

    /// A stored event's index by ID.
    ///
    /// # Errors
    /// The page store failed to read back the ID of an event whose ID has
    /// the same hash (IDs of events that are not state events are paged).
    pub fn lookup(&self, event_id: &str) -> Result<Option<EventIdx>, PageError> {
        self.by_id.get(event_id, &self.events)
    }

    /// The interned states.
    pub fn states(&self) -> &StateSets {
        &self.states
    }

    /// The auth-chain index.
    pub fn auth_index(&self) -> &AuthChainIndex {
        &self.auth_index
    }

    /// Whether stored events are recorded for [`take_records`](Self::take_records)
    /// (yes by default). A room with no store behind it, such as a fixture
    /// replay, turns it off: each record is a copy of the PDU.
    pub fn set_keep_records(&mut self, keep: bool) {
        self.keep_records = keep;
        if !keep {
            self.new_records = Vec::new();
        }
    }

    /// The records of what was stored since the last call (what a
    /// persistent store appends, in order), and forgets them.
    pub fn take_records(&mut self) -> Vec<EventRecord> {
        std::mem::take(&mut self.new_records)
    }
}
