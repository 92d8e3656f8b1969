//! Persistence: a room is an append-only log of [`LogRecord`]s (event
//! records and rebuild markers, see [`crate::placement`]).
//!
//! The engine keeps its indexes (states, auth chains, extremities) in memory
//! and derives them from the records; a store only has to keep the records,
//! in arrival order, and write each ingested batch atomically. That makes
//! the contract small enough for any backend: the in-memory [`MemoryStore`]
//! here, and IndexedDB or Durable Object storage behind the same two calls
//! in JavaScript (which is asynchronous there: the engine hands the batch
//! over and applies it only once the write has committed).
//!
//! [`RoomEngine`] ties a [`Room`] to a store: a batch is ingested, its new
//! records are appended, and if the append fails the room is rolled back to
//! where it was, so memory and storage never disagree.

use crate::placement::{restore, LogRecord, Placement, RestoreError};
use crate::room::{Outcome, Room, Verification};
use crate::room_version::UnsupportedRoomVersion;
use crate::signing::KeyStore;

/// A store failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend refused the write or read.
    #[error("store I/O failed: {0}")]
    Io(String),
    /// The stored log does not replay (a record gives another verdict, or
    /// the room version is not hosted).
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The room version is not hosted.
    #[error(transparent)]
    RoomVersion(#[from] UnsupportedRoomVersion),
}

/// An append-only record log.
pub trait EventStore {
    /// Appends `records` atomically: either all are stored or none.
    fn append(&mut self, records: &[LogRecord]) -> Result<(), StoreError>;
    /// Every record, in the order appended.
    fn load(&self) -> Result<Vec<LogRecord>, StoreError>;
}

/// The default store: records in memory (sharing their bytes with the room).
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    records: Vec<LogRecord>,
    /// Fail the next append (for tests of the rollback path).
    pub fail_next_append: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl EventStore for MemoryStore {
    fn append(&mut self, records: &[LogRecord]) -> Result<(), StoreError> {
        if std::mem::take(&mut self.fail_next_append) {
            return Err(StoreError::Io("injected failure".into()));
        }
        self.records.extend_from_slice(records);
        Ok(())
    }

    fn load(&self) -> Result<Vec<LogRecord>, StoreError> {
        Ok(self.records.clone())
    }
}

/// A room backed by a store.
#[derive(Debug)]
pub struct RoomEngine<S: EventStore> {
    room: Room,
    store: S,
}

impl<S: EventStore> RoomEngine<S> {
    /// A new, empty room on `store`.
    pub fn create(room_version: &str, store: S) -> Result<Self, StoreError> {
        Ok(Self { room: Room::new(room_version)?, store })
    }

    /// Reopens a room from its store (see [`restore`]): no signature is
    /// checked again, and records replayed in order must give their stored
    /// verdicts.
    pub fn open(room_version: &str, store: S) -> Result<Self, StoreError> {
        let room = restore(room_version, store.load()?)?;
        Ok(Self { room, store })
    }

    /// The room.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// The room, mutably (for callers that manage persistence themselves).
    pub fn room_mut(&mut self) -> &mut Room {
        &mut self.room
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Ingests live PDUs in order and persists the newly stored ones as one
    /// batch. If the write fails, the room is rolled back and nothing is stored.
    pub fn ingest_batch<'a>(
        &mut self,
        pdus: impl IntoIterator<Item = &'a str>,
        keys: &dyn KeyStore,
    ) -> Result<Vec<Outcome>, StoreError> {
        self.ingest_placed(pdus.into_iter().map(|p| (p, Placement::Timeline)), keys)
    }

    /// Ingests PDUs, each placed as given, and persists them as one batch
    /// (rolled back if the write fails).
    pub fn ingest_placed<'a, 'p>(
        &mut self,
        pdus: impl IntoIterator<Item = (&'a str, Placement<'p>)>,
        keys: &dyn KeyStore,
    ) -> Result<Vec<Outcome>, StoreError> {
        let cp = self.room.checkpoint();
        let outcomes: Vec<Outcome> = pdus
            .into_iter()
            .map(|(raw, placement)| self.room.ingest_as(raw, placement, Verification::Keys(keys)))
            .collect();
        let records: Vec<LogRecord> = self.room.take_records().into_iter().map(LogRecord::Event).collect();
        if !records.is_empty() {
            if let Err(e) = self.store.append(&records) {
                self.room.rollback(cp);
                return Err(e);
            }
        }
        self.room.release(cp);
        Ok(outcomes)
    }

    /// Places every stored event afresh (see [`crate::placement`]): the room
    /// is restored from its log with a rebuild marker, and the marker is
    /// appended. If anything fails, the room is left as it was.
    pub fn rebuild(&mut self) -> Result<(), StoreError> {
        let mut log = self.store.load()?;
        log.push(LogRecord::Rebuild);
        let room = restore(self.room.rules().id, log)?;
        self.store.append(&[LogRecord::Rebuild])?;
        self.room = room;
        Ok(())
    }

    /// Splits the engine into its parts.
    pub fn into_parts(self) -> (Room, S) {
        (self.room, self.store)
    }
}
