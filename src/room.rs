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

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::auth_chain::{AuthChainIndex, AuthNode, NodeSet};
use crate::auth_rules::{
    auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules, Allowed, AuthRejection,
    AuthState, CreateEnvelope,
};
use crate::canonical_json::object_to_canonical_string;
use crate::event::{EventStatus, Events, EventsMark, Facts, NewEvent, StateKeyIdx, StoredEvent};
use crate::ids::{domain_of, EventId, EventIdx, IntHasher, IntMap, Name};
use crate::pdu::{parse_pdu, ParsedPdu, PduFormatError};
pub use crate::placement::{EventRecord, LogRecord, Placement, RecordKind};
use crate::redaction::redact;
use crate::room_version::{RoomVersionRules, UnsupportedRoomVersion};
use crate::signatures::Signers;
pub use crate::signatures::{
    prepare_batch, verify_batch_signatures, verify_pdu_signatures, PreparedPdu, SIGNATURE_BATCH,
};
use crate::signing::{content_hash_and_size, decode_base64, KeyStore};
use crate::state_digest::{DigestCursors, KeyOrder};
use crate::state_res::{MainlineCache, Resolution, ResolveContext};
use crate::state_set::{StateMap, StateSetId, StateSets};

/// Most `prev_events` a PDU may list.
pub const MAX_PREV_EVENTS: usize = 20;
/// Most `auth_events` a PDU may list (in v12 the implied create event counts).
pub const MAX_AUTH_EVENTS: usize = 10;
/// Largest canonical PDU, in bytes.
pub const MAX_PDU_SIZE: usize = 65_536;
/// Largest identifier (`sender`, `room_id`, `state_key`, `type`, `event_id`).
pub const MAX_ID_LEN: usize = 255;
/// How many `/state_ids` auth chains stay cached (they are requested in
/// waves for the same few events; each can hold thousands of IDs).
pub const STATE_AUTH_CHAIN_CACHE: usize = 16;
/// How many dropped PDUs the room remembers (for inspection only).
pub const MAX_DROPPED_LOG: usize = 10_000;
/// Most bytes (reasons and event IDs) the dropped-PDU log shows; it holds at
/// most twice this between trims, whatever the PDUs carried.
pub const MAX_DROPPED_LOG_BYTES: usize = 1 << 20;
/// Longest reason kept for a dropped or rejected PDU, in bytes: reasons quote
/// parts of the PDU (event IDs, key IDs, values), so they are cut here and
/// end with `…`. This bounds the dropped log, the stored rejections and
/// every `/send` answer.
pub const MAX_REASON_BYTES: usize = 256;

/// `reason`, cut to at most [`MAX_REASON_BYTES`] bytes on a character
/// boundary (ending with `…` when cut).
pub fn bounded_reason(reason: impl Into<String>) -> String {
    let mut reason = reason.into();
    if reason.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES - '…'.len_utf8();
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

/// Which receipt check dropped a PDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropStage {
    /// Format, size, duplicate-room or count checks.
    Parse,
    /// Signatures.
    Signature,
    /// The `hashes` object itself.
    Hash,
    /// A prev or auth event is not stored.
    Missing,
    /// The auth rules raised an error that is not an authorization failure
    /// (see [`AuthRejection::is_authorization_failure`]).
    Auth,
}

/// What happened to one PDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored and accepted.
    Accepted {
        /// Its event ID.
        event_id: EventId,
        /// The content hash failed: stored in redacted form.
        redacted_on_receipt: bool,
    },
    /// Stored, but failed the auth rules.
    Rejected {
        /// Its event ID.
        event_id: EventId,
        /// Why.
        reason: String,
        /// The content hash failed: stored in redacted form.
        redacted_on_receipt: bool,
    },
    /// Not stored.
    Dropped {
        /// Its event ID, if the PDU could be hashed.
        event_id: Option<EventId>,
        /// Which check failed.
        stage: DropStage,
        /// Why.
        reason: String,
    },
    /// Already stored: nothing changed.
    Duplicate {
        /// Its event ID.
        event_id: EventId,
    },
    /// A history event some of whose auth events are not stored yet: its
    /// signatures and hashes are checked and it is logged, but it is only
    /// checked against the auth rules, and stored, when a rebuild places it
    /// after them (see [`crate::placement`]).
    Deferred {
        /// Its event ID.
        event_id: EventId,
    },
}

impl Outcome {
    /// The event ID, when known.
    pub fn event_id(&self) -> Option<&EventId> {
        match self {
            Outcome::Accepted { event_id, .. }
            | Outcome::Rejected { event_id, .. }
            | Outcome::Duplicate { event_id }
            | Outcome::Deferred { event_id } => Some(event_id),
            Outcome::Dropped { event_id, .. } => event_id.as_ref(),
        }
    }

    /// `accepted`, `rejected`, `dropped`, `duplicate` or `deferred`.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Accepted { .. } => "accepted",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Dropped { .. } => "dropped",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Deferred { .. } => "deferred",
        }
    }

    /// Whether the PDU is (now or already) stored.
    pub fn is_stored(&self) -> bool {
        matches!(self, Outcome::Accepted { .. } | Outcome::Rejected { .. } | Outcome::Duplicate { .. })
    }

    fn drop(event_id: Option<&EventId>, stage: DropStage, reason: impl Into<String>) -> Self {
        Outcome::Dropped { event_id: event_id.cloned(), stage, reason: bounded_reason(reason) }
    }
}

/// A dropped PDU, remembered for inspection.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DroppedEvent {
    /// Its event ID, if the PDU could be hashed.
    pub event_id: Option<String>,
    /// Which check failed.
    pub stage: DropStage,
    /// Why (at most [`MAX_REASON_BYTES`]).
    pub reason: String,
}

impl DroppedEvent {
    /// The bytes this entry counts against [`MAX_DROPPED_LOG_BYTES`].
    fn weight(&self) -> usize {
        self.reason.len() + self.event_id.as_ref().map_or(0, String::len)
    }
}

/// Event ID → index, keyed by a 32-bit hash of the ID so that the ID text is
/// stored once (in the event); the rare colliding IDs go to a plain map.
#[derive(Debug, Default)]
struct IdIndex {
    by_hash: IntMap<u32, EventIdx>,
    collisions: HashMap<Box<str>, EventIdx>,
}

/// 32 bits of a hash of the ID: enough to find the event (a collision
/// costs one extra entry in the side map, keyed by the whole ID with a
/// random SipHash, never a wrong answer), so a fast unkeyed mix will do.
fn id_hash(id: &str) -> u32 {
    use std::hash::Hasher;
    let mut h = IntHasher::default();
    for chunk in id.as_bytes().chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h.write_u64(u64::from_le_bytes(word));
    }
    (h.finish() >> 32) as u32
}

impl IdIndex {
    fn get(&self, id: &str, events: &Events) -> Option<EventIdx> {
        if let Some(i) = self.by_hash.get(&id_hash(id)) {
            if events.id(&events[i.ix()]) == id {
                return Some(*i);
            }
        }
        self.collisions.get(id).copied()
    }

    fn insert(&mut self, id: &str, idx: EventIdx) {
        match self.by_hash.entry(id_hash(id)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(idx);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.insert(id.into(), idx);
            }
        }
    }

    fn remove(&mut self, id: &str, idx: EventIdx) {
        if self.collisions.remove(id).is_none() && self.by_hash.get(&id_hash(id)) == Some(&idx) {
            self.by_hash.remove(&id_hash(id));
        }
    }
}

/// How much to trust a PDU's signatures.
#[derive(Clone)]
pub enum Verification<'k> {
    /// Check them with these keys.
    Keys(&'k dyn KeyStore),
    /// They were checked when the PDU was first stored (restoring from a store).
    AlreadyVerified,
    /// They were checked ahead of time with [`verify_pdu_signatures`] (e.g. on
    /// another thread); this is the result.
    Precomputed(Result<(), String>),
    /// Do not look at signatures at all, not even for their presence: for
    /// test vectors and scenario DAGs that carry none. Never use this for
    /// events from the network.
    Unsigned,
}

/// Whether [`Room::ingest_prepared`] already logged a drop (it re-enters
/// [`Room::ingest`] for unparseable PDUs, which logs it).
fn prepared_was_dropped_elsewhere(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Dropped { event_id: None, stage: DropStage::Parse, .. })
}

/// How an event is stored (from its [`Placement`] and what is placed).
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// In the DAG, its state from its prev events.
    Placed,
    /// In the DAG, its state from a remote answer (some prev events are not placed).
    WithState(StateMap),
    /// A history event whose prev events are not placed: an outlier until a rebuild.
    Pending,
    /// Known only as state or auth chain.
    Outlier,
}

/// The lengths of the room's append-only parts at a point in time, to undo a
/// failed batch.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    events: EventsMark,
    states: usize,
    auth_nodes: usize,
    dropped: usize,
    dropped_bytes: usize,
    dropped_total: u64,
    room_id: Option<String>,
    extremities: BTreeSet<EventIdx>,
    referenced_log: usize,
    pending_log: usize,
    deferred_log: usize,
    new_records: usize,
}

/// A room's event DAG, states and indexes.
pub struct Room {
    rules: &'static RoomVersionRules,
    room_id: Option<String>,
    events: Events,
    by_id: IdIndex,
    rejections: HashMap<EventIdx, Box<str>>,
    strings: HashSet<Name>,
    keys: HashMap<(Name, Name), StateKeyIdx>,
    key_names: Vec<(Name, Name)>,
    states: StateSets,
    auth_index: AuthChainIndex,
    resolutions: HashMap<Vec<StateSetId>, (StateSetId, Arc<ResolutionInfo>)>,
    mainlines: MainlineCache,
    referenced: Vec<bool>,
    /// Prev events marked referenced since the open checkpoint (only kept
    /// while one is open, to undo them).
    referenced_log: Vec<EventIdx>,
    checkpoint_open: bool,
    extremities: BTreeSet<EventIdx>,
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

/// A deferred history event's links.
#[derive(Debug)]
struct Deferred {
    prev_events: Box<[Box<str>]>,
    auth_events: Box<[Box<str>]>,
    depth: i64,
}

/// Which redaction applies to which event (read-time redaction, v3+
/// "handling redactions"): the first accepted redaction, in arrival order,
/// whose sender had the `redact` level or shares the target's server.
/// Creation events are never redacted.
#[derive(Debug, Default)]
struct Redactions {
    applied: HashMap<EventIdx, EventIdx>,
    pending: HashMap<Name, Vec<EventIdx>>,
}

/// What a resolution at a merge point did (for inspection).
#[derive(Clone, Debug, Default)]
pub struct ResolutionInfo {
    /// The distinct input states.
    pub inputs: Vec<StateSetId>,
    /// Keys that differed between them.
    pub conflicted_keys: Vec<StateKeyIdx>,
    /// Size of the full conflicted set.
    pub full_conflicted_set: usize,
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
            keys: HashMap::new(),
            key_names: Vec::new(),
            states: StateSets::new(),
            auth_index: AuthChainIndex::new(),
            resolutions: HashMap::new(),
            mainlines: MainlineCache::default(),
            referenced: Vec::new(),
            referenced_log: Vec::new(),
            checkpoint_open: false,
            extremities: BTreeSet::new(),
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
    pub fn id(&self, idx: EventIdx) -> &str {
        self.events.id(self.event(idx))
    }

    /// A stored event's PDU, exactly as received.
    pub fn raw(&self, idx: EventIdx) -> &str {
        self.events.raw(self.event(idx))
    }

    /// A stored event's `prev_events`.
    pub fn prev_events(&self, idx: EventIdx) -> &[EventIdx] {
        self.events.prev_events(self.event(idx))
    }

    /// A stored event's auth events (room v12: with the create event).
    pub fn auth_events(&self, idx: EventIdx) -> &[EventIdx] {
        self.events.auth_events(self.event(idx))
    }

    /// Why a stored event was rejected.
    pub fn rejection(&self, idx: EventIdx) -> Option<&str> {
        self.rejections.get(&idx).map(|r| &**r)
    }

    /// A stored event.
    pub fn event(&self, idx: EventIdx) -> &StoredEvent {
        &self.events[idx.ix()]
    }

    /// A stored event's index by ID.
    pub fn lookup(&self, event_id: &str) -> Option<EventIdx> {
        self.by_id.get(event_id, &self.events)
    }

    /// Recently dropped PDUs (at most [`MAX_DROPPED_LOG`] entries and
    /// [`MAX_DROPPED_LOG_BYTES`]) and the total count.
    pub fn dropped(&self) -> (&[DroppedEvent], u64) {
        let mut keep = self.dropped.len();
        let mut bytes = 0;
        while keep > 0 && self.dropped.len() - keep < MAX_DROPPED_LOG {
            bytes += self.dropped[keep - 1].weight();
            if bytes > MAX_DROPPED_LOG_BYTES {
                break;
            }
            keep -= 1;
        }
        (&self.dropped[keep..], self.dropped_total)
    }

    /// Forgets the oldest dropped PDUs once the log holds twice what it
    /// shows, in entries or in bytes (amortised O(1) per drop). Never while a
    /// checkpoint is open, so a rollback only truncates.
    fn trim_dropped_log(&mut self) {
        if self.checkpoint_open
            || (self.dropped.len() < 2 * MAX_DROPPED_LOG && self.dropped_bytes < 2 * MAX_DROPPED_LOG_BYTES)
        {
            return;
        }
        let shown = self.dropped().0.len();
        let cut = self.dropped.len() - shown;
        self.dropped_bytes -= self.dropped[..cut].iter().map(DroppedEvent::weight).sum::<usize>();
        self.dropped.drain(..cut);
    }

    /// The interned states.
    pub fn states(&self) -> &StateSets {
        &self.states
    }

    /// The auth-chain index.
    pub fn auth_index(&self) -> &AuthChainIndex {
        &self.auth_index
    }

    /// `(type, state_key)` of an interned key.
    pub fn key_name(&self, k: StateKeyIdx) -> (&str, &str) {
        let (t, s) = &self.key_names[k.0 as usize];
        (t, s)
    }

    /// The interned key of `(type, state_key)`, if any event ever used it.
    pub fn key_of(&self, ty: &str, state_key: &str) -> Option<StateKeyIdx> {
        let t = self.strings.get(ty)?;
        let s = self.strings.get(state_key)?;
        self.keys.get(&(t.clone(), s.clone())).copied()
    }

    fn intern_key(&mut self, ty: &Name, state_key: &Name) -> StateKeyIdx {
        if let Some(k) = self.keys.get(&(ty.clone(), state_key.clone())) {
            return *k;
        }
        let k = StateKeyIdx(u32::try_from(self.key_names.len()).expect("fewer than 2^32 state keys"));
        self.keys.insert((ty.clone(), state_key.clone()), k);
        self.key_names.push((ty.clone(), state_key.clone()));
        k
    }

    /// The forward extremities: accepted events that no accepted event lists
    /// in `prev_events`.
    pub fn forward_extremities(&self) -> impl Iterator<Item = EventIdx> + '_ {
        self.extremities.iter().copied()
    }

    /// A state map.
    pub fn state(&self, id: StateSetId) -> &StateMap {
        self.states.get(id)
    }

    /// The room's current state: the resolution of the states after the
    /// forward extremities.
    pub fn current_state(&mut self) -> StateSetId {
        let ext: Vec<EventIdx> = self.extremities.iter().copied().collect();
        self.resolve_after(&ext)
    }

    /// The current state (cached until the next stored event).
    pub fn current_state_map(&self) -> Arc<StateMap> {
        if let Some(c) = &self.caches.borrow().current {
            return Arc::clone(c);
        }
        let m = Arc::new(self.compute_current_state());
        self.caches.borrow_mut().current = Some(Arc::clone(&m));
        m
    }

    fn compute_current_state(&self) -> StateMap {
        let mut ids: Vec<StateSetId> = self.extremities.iter().map(|e| self.event(*e).state_after).collect();
        ids.sort();
        ids.dedup();
        match ids.as_slice() {
            [] => StateMap::default(),
            [one] => self.state(*one).clone(),
            many => {
                if let Some((id, _)) = self.resolutions.get(many) {
                    return self.state(*id).clone();
                }
                self.resolve_ids(many).state
            }
        }
    }

    /// How a merge point's state was resolved, when it was.
    pub fn resolution_for(&self, prev_events: &[EventIdx]) -> Option<Arc<ResolutionInfo>> {
        let mut ids: Vec<StateSetId> = prev_events.iter().map(|e| self.event(*e).state_after).collect();
        ids.sort();
        ids.dedup();
        self.resolutions.get(&ids).map(|(_, info)| Arc::clone(info))
    }

    fn resolve_ids(&self, ids: &[StateSetId]) -> Resolution {
        let maps: Vec<&StateMap> = ids.iter().map(|id| self.states.get(*id)).collect();
        let key_of = |t: &str, k: &str| self.key_of(t, k);
        let ctx = ResolveContext {
            rules: self.rules,
            events: &self.events,
            auth_index: &self.auth_index,
            key_of: &key_of,
            mainlines: &self.mainlines,
        };
        ctx.resolve(&maps)
    }

    /// The state before an event with these prev events: the states after
    /// each of them, resolved if they differ (a rejected event's state after
    /// is its state before).
    pub fn resolve_after(&mut self, prev_events: &[EventIdx]) -> StateSetId {
        let mut ids: Vec<StateSetId> = prev_events.iter().map(|e| self.event(*e).state_after).collect();
        ids.sort();
        ids.dedup();
        match ids.as_slice() {
            [] => StateSetId::EMPTY,
            [one] => *one,
            many => {
                if let Some((id, _)) = self.resolutions.get(many) {
                    return *id;
                }
                let res = self.resolve_ids(many);
                let id = self.states.intern(res.state);
                let info = ResolutionInfo {
                    inputs: ids.clone(),
                    conflicted_keys: res.conflicted_keys,
                    full_conflicted_set: res.full_conflicted_set,
                };
                self.resolutions.insert(ids, (id, Arc::new(info)));
                id
            }
        }
    }

    /// Receives one live PDU (see the module docs for the checks): every
    /// prev and auth event must be stored and placed.
    pub fn ingest(&mut self, raw: &str, verification: Verification<'_>) -> Outcome {
        self.ingest_as(raw, Placement::Timeline, verification)
    }

    /// Receives one PDU placed as `placement` says (see [`crate::placement`]).
    pub fn ingest_as(&mut self, raw: &str, placement: Placement<'_>, verification: Verification<'_>) -> Outcome {
        let outcome = match parse_pdu(raw, self.rules) {
            Ok(pdu) => self.ingest_parsed(raw, pdu, placement, verification),
            Err(e) => Outcome::drop(None, DropStage::Parse, e.to_string()),
        };
        self.log_drop(&outcome);
        outcome
    }

    /// Receives PDUs in order, placed as `placement` says, with their
    /// signatures checked [`SIGNATURE_BATCH`] at a time (one ed25519 batch
    /// verification each, about twice as fast per signature): the outcomes
    /// are those [`ingest_as`](Self::ingest_as) gives one by one. Stops after
    /// the first outcome for which `stop` holds (the caller decides whether
    /// to go on, e.g. a bound on rejected events), so the result may be a
    /// prefix.
    pub fn ingest_batch(
        &mut self,
        raws: &[&str],
        placement: Placement<'_>,
        keys: &dyn KeyStore,
        stop: impl Fn(&Outcome) -> bool,
    ) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(raws.len());
        for chunk in raws.chunks(SIGNATURE_BATCH) {
            for (raw, p) in chunk.iter().zip(prepare_batch(chunk, self.rules, keys)) {
                let outcome = self.ingest_prepared_as(raw, placement, p);
                let done = stop(&outcome);
                out.push(outcome);
                if done {
                    return out;
                }
            }
        }
        out
    }

    /// Receives one PDU prepared by [`prepare_batch`] (parsed, signatures
    /// checked in a batch): the same checks as [`ingest`](Self::ingest)
    /// without parsing it again.
    pub fn ingest_prepared(&mut self, raw: &str, prepared: PreparedPdu) -> Outcome {
        self.ingest_prepared_as(raw, Placement::Timeline, prepared)
    }

    fn ingest_prepared_as(&mut self, raw: &str, placement: Placement<'_>, prepared: PreparedPdu) -> Outcome {
        let outcome = match prepared.parsed {
            Some(pdu) => self.ingest_parsed(raw, pdu, placement, Verification::Precomputed(prepared.verdict)),
            None => self.ingest_as(raw, placement, Verification::Precomputed(prepared.verdict)),
        };
        if prepared_was_dropped_elsewhere(&outcome) {
            return outcome;
        }
        self.log_drop(&outcome);
        outcome
    }

    fn log_drop(&mut self, outcome: &Outcome) {
        if let Outcome::Dropped { event_id, stage, reason } = &outcome {
            self.dropped_total += 1;
            let entry = DroppedEvent {
                event_id: event_id.as_ref().map(|e| e.to_string()),
                stage: *stage,
                reason: bounded_reason(reason.as_str()),
            };
            self.dropped_bytes += entry.weight();
            self.dropped.push(entry);
            self.trim_dropped_log();
        }
    }

    /// The receipt checks after the format check (1).
    fn ingest_parsed(
        &mut self,
        raw: &str,
        pdu: ParsedPdu,
        placement: Placement<'_>,
        verification: Verification<'_>,
    ) -> Outcome {
        let rules = self.rules;
        let id = pdu.event_id.clone();
        // 2. Duplicates, counts, room.
        if let Some(existing) = self.lookup(id.as_str()) {
            self.outlier_seen_in_timeline(existing, &pdu, placement);
            return Outcome::Duplicate { event_id: id };
        }
        if self.deferred.contains_key(id.as_str()) {
            return Outcome::Duplicate { event_id: id };
        }
        if pdu.prev_events.len() > MAX_PREV_EVENTS || pdu.auth_events.len() > MAX_AUTH_EVENTS {
            return Outcome::drop(Some(&id), DropStage::Parse, "too many prev_events or auth_events");
        }
        let is_create = pdu.event_type == "m.room.create" && pdu.state_key.as_deref() == Some("");
        if is_create {
            if self.room_id.is_some() {
                return Outcome::drop(Some(&id), DropStage::Parse, "second create event");
            }
            // The room's version is fixed by what it already stores: once it
            // holds events, a create event claiming another version is never
            // stored (it would be read by this version's rules). A first
            // create event goes through the auth rules, which reject an
            // unknown version as the reference server does.
            let claimed = pdu.json.get("content").and_then(|c| c.get("room_version"));
            let claimed = claimed.map_or(Some("1"), Value::as_str);
            if !self.events.is_empty() && claimed != Some(rules.id) {
                let claimed = claimed.map_or_else(|| "a non-string".to_owned(), |c| format!("{c:?}"));
                return Outcome::drop(
                    Some(&id),
                    DropStage::Parse,
                    format!("create event for room version {claimed} in a room of version {:?}", rules.id),
                );
            }
        } else if self.room_id.as_deref() != Some(pdu.room_id.as_str()) {
            return Outcome::drop(Some(&id), DropStage::Parse, "unknown room");
        }
        let signers = match Signers::of(&pdu, rules) {
            Ok(s) => s,
            Err(reason) => return Outcome::drop(Some(&id), DropStage::Signature, reason),
        };
        // 3. Signatures.
        let require_signed = !matches!(verification, Verification::Unsigned);
        let verified = match verification {
            Verification::Keys(keys) => signers.verify(&pdu, rules, keys),
            Verification::AlreadyVerified | Verification::Unsigned => Ok(()),
            Verification::Precomputed(result) => result,
        };
        if let Err(reason) = verified {
            return Outcome::drop(Some(&id), DropStage::Signature, reason);
        }
        // 4. Content hash.
        let mut json = pdu.json;
        // The canonical size of `json` comes with the content hash's
        // serialisation (until the event is redacted).
        let (redacted_on_receipt, mut canonical_size) = match json.get("hashes").and_then(|h| h.get("sha256")) {
            None => return Outcome::drop(Some(&id), DropStage::Hash, "Algorithm sha256 not in hashes"),
            Some(h) => match h.as_str().and_then(decode_base64) {
                None => return Outcome::drop(Some(&id), DropStage::Hash, "Invalid base64 in hashes.sha256"),
                Some(expected) => {
                    let (hash, size) = content_hash_and_size(&json);
                    (expected != hash, Some(size))
                }
            },
        };
        if redacted_on_receipt {
            canonical_size = None;
            let unsigned = json.get("unsigned").cloned();
            json = redact(&json, rules);
            if let Some(u) = unsigned {
                json.insert("unsigned".into(), u);
            }
        }
        // 5. Every auth event must be stored; prev events as the placement says.
        let mut auth_events = Vec::with_capacity(pdu.auth_events.len());
        let mut missing: Vec<&str> = Vec::new();
        for e in pdu.auth_events.iter() {
            match self.lookup(e) {
                Some(idx) => auth_events.push(idx),
                None => missing.push(e.as_str()),
            }
        }
        let mut prev_events = Vec::with_capacity(pdu.prev_events.len());
        let mut unplaced: Vec<&str> = Vec::new();
        for e in pdu.prev_events.iter() {
            match self.lookup(e) {
                Some(idx) if !self.event(idx).outlier => prev_events.push(idx),
                _ => unplaced.push(e.as_str()),
            }
        }
        if placement == Placement::History && !missing.is_empty() {
            return self.defer(raw, &id, &pdu.prev_events, &pdu.auth_events, pdu.depth);
        }
        let mode = match placement {
            Placement::Outlier => Mode::Outlier,
            Placement::Timeline | Placement::Live => {
                missing.extend(&unplaced);
                Mode::Placed
            }
            _ if unplaced.is_empty() => Mode::Placed,
            Placement::History | Placement::SoftFailed => Mode::Pending,
            Placement::WithState(state) => match self.remote_state(state) {
                Ok(map) => Mode::WithState(map),
                Err((stage, reason)) => return Outcome::drop(Some(&id), stage, reason),
            },
        };
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            return Outcome::drop(Some(&id), DropStage::Missing, format!("unknown prev/auth events {missing:?}"));
        }
        // 6. The state before the event: none for outliers; the remote
        // state where prev events are missing. Every event of type
        // m.room.create starts from the empty state (the create rules look
        // at no state).
        let state_before = match &mode {
            Mode::Outlier | Mode::Pending => StateSetId::EMPTY,
            Mode::WithState(map) => self.states.intern(map.clone()),
            Mode::Placed if pdu.event_type == "m.room.create" => StateSetId::EMPTY,
            Mode::Placed => self.resolve_after(&prev_events),
        };
        let first_prev = pdu.prev_events.first().and_then(|p| self.lookup(p));
        let outlier = matches!(mode, Mode::Outlier | Mode::Pending);
        // Build the compact view.
        let sender = intern(&mut self.strings, &pdu.sender);
        let event_type = intern(&mut self.strings, &pdu.event_type);
        let state_key = pdu.state_key.as_deref().map(|s| intern(&mut self.strings, s));
        let key = state_key.as_ref().map(|sk| self.intern_key(&event_type, sk));
        // 7a. Canonical size and identifier lengths.
        let limits = check_limits(
            &json,
            canonical_size,
            [
                ("sender", Some(&pdu.sender)),
                ("room_id", Some(&pdu.room_id)),
                ("state_key", pdu.state_key.as_deref()),
                ("type", Some(&pdu.event_type)),
                ("event_id", Some(id.as_str())),
            ],
            rules,
        );
        if let Err(LimitError::Unpersistable(reason)) = &limits {
            return Outcome::drop(Some(&id), DropStage::Parse, reason.clone());
        }
        let mark = self.events.mark();
        let mut event = self.events.prepare(NewEvent {
            id: id.as_str(),
            raw,
            prev_events: &prev_events,
            pdu_prev_count: pdu.prev_events.len(),
            first_prev,
            outlier,
            auth_events: &auth_events,
            sender,
            event_type,
            state_key,
            key,
            depth: pdu.depth,
            origin_server_ts: pdu.origin_server_ts,
            facts: Facts::extract(&json, rules),
            state_before,
            redacted_on_receipt,
        });
        let idx = event.idx;
        let mut rejection: Option<String> = None;
        // 7. Size limits, then the auth rules.
        let verdict = match limits {
            Err(LimitError::Unpersistable(_)) => unreachable!("returned above"),
            Err(LimitError::Reject(r)) => Err(r),
            Ok(()) => self.check_signed_by(&json, &signers, require_signed).and_then(|()| {
                let envelope = CreateEnvelope { room_id: pdu.has_room_id.then_some(pdu.room_id.as_str()) };
                self.check_auth(&event, &envelope, !outlier)
            }),
        };
        // Receipt check 6, soft failure: its check raises like the auth rules
        // do, and an error that is not an AuthError drops the event too.
        let verdict = verdict.and_then(|allowed| {
            let soft_failed = match placement {
                Placement::SoftFailed => mode == Mode::Placed,
                Placement::Live => self.soft_fails(&event)?,
                _ => false,
            };
            Ok((allowed, soft_failed))
        });
        match verdict {
            Ok((allowed, soft_failed)) => {
                event.recheck_redaction = allowed.recheck_redaction;
                event.soft_failed = soft_failed;
            }
            // Synapse stores an event as rejected only on an AuthError; any
            // other error of its auth rules means it never stores it.
            Err(reason) if !reason.is_authorization_failure() => {
                self.events.cut(mark);
                return Outcome::drop(Some(&id), DropStage::Auth, reason.to_string());
            }
            Err(reason) => {
                event.status = EventStatus::Rejected;
                rejection = Some(bounded_reason(reason.to_string()));
            }
        }
        let outcome = match &rejection {
            None => Outcome::Accepted { event_id: id, redacted_on_receipt },
            Some(reason) => {
                self.rejections.insert(idx, reason.as_str().into());
                Outcome::Rejected { event_id: id, reason: reason.clone(), redacted_on_receipt }
            }
        };
        if is_create && event.is_accepted() {
            self.room_id = Some(pdu.room_id);
        }
        let record = self.keep_records.then(|| {
            let state = match &mode {
                Mode::WithState(map) => Some(map.iter().map(|(_, e)| self.id(e).to_owned()).collect()),
                _ => None,
            };
            let mut record =
                EventRecord::with_kind(self.events.id(&event), raw, Some(event.status), placement.kind(), state);
            record.soft_failed = event.soft_failed;
            record
        });
        if matches!(mode, Mode::Pending | Mode::WithState(_)) {
            self.unplaced_prevs.insert(idx, unplaced.iter().map(|p| Box::from(*p)).collect());
        }
        self.commit(event);
        if mode == Mode::Pending {
            self.make_pending(idx);
        }
        self.new_records.extend(record);
        outcome
    }

    /// A timeline PDU for an event stored as an outlier: the event is kept
    /// pending (with a timeline record) until a rebuild places it.
    fn outlier_seen_in_timeline(&mut self, existing: EventIdx, pdu: &ParsedPdu, placement: Placement<'_>) {
        let already_pending = self.pending.contains(&existing);
        let new_state = matches!(placement, Placement::WithState(_));
        if placement == Placement::Outlier || !self.event(existing).outlier || (already_pending && !new_state) {
            return;
        }
        let state = match placement {
            Placement::WithState(s) => Some(s.to_vec()),
            _ => None,
        };
        let e = self.event(existing);
        let record = self.keep_records.then(|| {
            EventRecord::with_kind(self.id(existing), self.raw(existing), Some(e.status), RecordKind::Timeline, state)
        });
        let unplaced: Box<[Box<str>]> = pdu
            .prev_events
            .iter()
            .filter(|p| self.lookup(p).is_none_or(|i| self.event(i).outlier))
            .map(|p| Box::from(p.as_str()))
            .collect();
        if !already_pending {
            self.unplaced_prevs.insert(existing, unplaced);
            self.make_pending(existing);
        }
        self.new_records.extend(record);
    }

    /// Logs a history event whose auth events are not all stored yet.
    fn defer(
        &mut self,
        raw: &str,
        id: &EventId,
        prev_events: &[String],
        auth_events: &[String],
        depth: i64,
    ) -> Outcome {
        let ids = |l: &[String]| l.iter().map(|e| Box::from(e.as_str())).collect::<Box<[Box<str>]>>();
        let key: Box<str> = Box::from(id.as_str());
        self.deferred
            .insert(key.clone(), Deferred { prev_events: ids(prev_events), auth_events: ids(auth_events), depth });
        if self.checkpoint_open {
            self.deferred_log.push(key);
        }
        if self.keep_records {
            self.new_records.push(EventRecord::deferred(id.as_str(), raw));
        }
        Outcome::Deferred { event_id: id.clone() }
    }

    fn make_pending(&mut self, idx: EventIdx) {
        self.pending.insert(idx);
        if self.checkpoint_open {
            self.pending_log.push(idx);
        }
    }

    /// The state map of a remote answer: stored state events by ID
    /// (rejected ones cannot be state and are left out).
    fn remote_state(&self, ids: &[String]) -> Result<StateMap, (DropStage, String)> {
        let mut entries = Vec::with_capacity(ids.len());
        let mut missing: Vec<&str> = Vec::new();
        for id in ids {
            let Some(e) = self.lookup(id) else {
                missing.push(id);
                continue;
            };
            let ev = self.event(e);
            match ev.key {
                Some(k) if ev.is_accepted() => entries.push((k, e)),
                Some(_) => {}
                None => return Err((DropStage::Parse, format!("state event {id} is not a state event"))),
            }
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            return Err((DropStage::Missing, format!("unknown state events {missing:?}")));
        }
        let n = entries.len();
        let map = StateMap::from_entries(entries);
        if map.len() != n {
            return Err((DropStage::Parse, "the state lists one (type, state_key) twice".into()));
        }
        Ok(map)
    }

    /// Receipt check 6 (the reference server's `_check_for_soft_fail`): an
    /// event whose prev events are not the forward extremities must also
    /// pass the state-dependent auth rules against the room's current state
    /// (its auth types of it); otherwise it is soft failed.
    ///
    /// An error of the auth rules that is not an authorization failure is
    /// returned: Synapse's `_check_for_soft_fail` catches only `AuthError`,
    /// so the event is never stored.
    fn soft_fails(&self, event: &StoredEvent) -> Result<bool, AuthRejection> {
        let prevs: BTreeSet<EventIdx> = self.events.prev_events(event).iter().copied().collect();
        if prevs == self.extremities || event.is_create_type() {
            return Ok(false);
        }
        let current = self.current_state_map();
        let types = auth_types_for_event(event, self.rules)?;
        let auth: Vec<&StoredEvent> = types
            .iter()
            .filter_map(|(t, k)| self.key_of(t, k).and_then(|key| current.get(key)))
            .map(|e| self.event(e))
            .collect();
        match check_state_dependent_auth_rules(event, &AuthState::from_events(auth), self.rules) {
            Ok(_) => Ok(false),
            Err(e) if e.is_authorization_failure() => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The signatures an event must carry (checked again after the hash check,
    /// as the stored form is what counts).
    fn check_signed_by(
        &self,
        json: &Map<String, Value>,
        signers: &Signers,
        required: bool,
    ) -> Result<(), AuthRejection> {
        if !required {
            return Ok(());
        }
        let signed_by = |server: &str| json.get("signatures").and_then(|s| s.get(server)).is_some();
        if !signers.is_3pid_invite && !signed_by(&signers.sender_domain) {
            return Err(AuthRejection::Malformed("Event not signed by sender's server".into()));
        }
        if let Some(d) = &signers.authoriser_domain {
            if !signed_by(d) {
                return Err(AuthRejection::Malformed("Event not signed by authorising server".into()));
            }
        }
        Ok(())
    }

    /// The auth rules against the event's auth events, then against the
    /// state before it when that state would pick different auth events.
    /// Outliers are checked against their auth events only.
    fn check_auth(
        &self,
        event: &StoredEvent,
        envelope: &CreateEnvelope<'_>,
        against_state: bool,
    ) -> Result<Allowed, AuthRejection> {
        let claimed: Vec<&StoredEvent> = self.events.auth_events(event).iter().map(|a| self.event(*a)).collect();
        check_state_independent_auth_rules(event, envelope, &claimed, &self.events, self.rules)?;
        let mut allowed =
            check_state_dependent_auth_rules(event, &AuthState::from_events(claimed.iter().copied()), self.rules)?;
        if event.is_create_type() || !against_state {
            return Ok(allowed);
        }
        let before = self.states.get(event.state_before);
        let mut calculated: Vec<EventIdx> = auth_types_for_event(event, self.rules)?
            .iter()
            .filter_map(|(t, k)| self.key_of(t, k).and_then(|key| before.get(key)))
            .collect();
        let mut claimed_ids: Vec<EventIdx> = self.events.auth_events(event).to_vec();
        calculated.sort();
        claimed_ids.sort();
        if calculated != claimed_ids {
            let state = AuthState::from_events(calculated.iter().map(|e| self.event(*e)));
            let again = check_state_dependent_auth_rules(event, &state, self.rules)?;
            allowed.recheck_redaction |= again.recheck_redaction;
        }
        Ok(allowed)
    }

    fn commit(&mut self, mut event: StoredEvent) {
        let idx = event.idx;
        if event.is_accepted() {
            if let Some(k) = event.key {
                if !event.outlier {
                    let after = self.states.get(event.state_before).with_changes(&[(k, Some(idx))]);
                    event.state_after = self.states.intern(after);
                }
                let parents: Vec<AuthNode> = self
                    .events
                    .auth_events(&event)
                    .iter()
                    .filter_map(|a| self.event(*a).auth_node().map(AuthNode))
                    .collect();
                let node = self.auth_index.add(idx, &parents);
                event.set_auth_node(node.0);
            }
        }
        if event.is_accepted() && !event.outlier && !event.soft_failed {
            for p in self.events.prev_events(&event) {
                if !self.referenced[p.ix()] {
                    self.referenced[p.ix()] = true;
                    if self.checkpoint_open {
                        self.referenced_log.push(*p);
                    }
                }
                self.extremities.remove(p);
            }
            self.extremities.insert(idx);
        }
        let id = EventId::new(self.events.id(&event)).expect("stored event IDs start with $");
        self.by_id.insert(id.as_str(), idx);
        self.referenced.push(false);
        let accepted_redaction = match (&event.facts, event.status) {
            (Facts::Redaction(Some(target)), EventStatus::Accepted) => Some(target.clone()),
            _ => None,
        };
        self.events.push(event);
        self.caches.get_mut().current = None;
        if let Some(target) = accepted_redaction {
            self.redactions.pending.entry(target.clone()).or_default().push(idx);
            self.apply_pending_redactions(&target);
        }
        self.apply_pending_redactions(id.as_str());
    }

    /// Applies the first qualifying pending redaction of `target`, if stored.
    fn apply_pending_redactions(&mut self, target: &str) {
        let Some(t) = self.lookup(target) else { return };
        if self.redactions.applied.contains_key(&t) {
            return;
        }
        let Some(pending) = self.redactions.pending.get(target) else {
            return;
        };
        let te = self.event(t);
        if &*te.event_type == "m.room.create" {
            return;
        }
        let found = pending.iter().copied().find(|r| {
            let re = self.event(*r);
            !re.recheck_redaction || domain_of(&re.sender) == domain_of(&te.sender)
        });
        if let Some(r) = found {
            self.redactions.applied.insert(t, r);
        }
    }

    /// The redaction applied to an event when it is read, if any.
    pub fn redacted_by(&self, idx: EventIdx) -> Option<EventIdx> {
        self.redactions.applied.get(&idx).copied()
    }

    /// Every applied redaction: target → redaction event.
    pub fn applied_redactions(&self) -> impl Iterator<Item = (EventIdx, EventIdx)> + '_ {
        self.redactions.applied.iter().map(|(t, r)| (*t, *r))
    }

    /// Marks the current extent of the room, to [`rollback`](Self::rollback)
    /// to; [`release`](Self::release) it once the batch is safely stored.
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.checkpoint_open = true;
        Checkpoint {
            events: self.events.mark(),
            states: self.states.len(),
            auth_nodes: self.auth_index.len(),
            dropped: self.dropped.len(),
            dropped_bytes: self.dropped_bytes,
            dropped_total: self.dropped_total,
            room_id: self.room_id.clone(),
            extremities: self.extremities.clone(),
            referenced_log: self.referenced_log.len(),
            pending_log: self.pending_log.len(),
            deferred_log: self.deferred_log.len(),
            new_records: self.new_records.len(),
        }
    }

    /// Ends a checkpoint whose batch was stored (nothing to undo any more).
    pub fn release(&mut self, _cp: Checkpoint) {
        self.checkpoint_open = false;
        self.referenced_log.clear();
        self.pending_log.clear();
        self.deferred_log.clear();
        self.trim_dropped_log();
    }

    /// Undoes everything stored since `cp` (a batch whose write failed).
    pub fn rollback(&mut self, cp: Checkpoint) {
        self.checkpoint_open = false;
        let kept = cp.events.len();
        for i in kept..self.events.len() {
            let e = &self.events[i];
            self.by_id.remove(self.events.id(e), e.idx);
            self.rejections.remove(&e.idx);
        }
        self.events.cut(cp.events);
        self.referenced.truncate(kept);
        for p in self.referenced_log.drain(cp.referenced_log..) {
            if p.ix() < self.referenced.len() {
                self.referenced[p.ix()] = false;
            }
        }
        for p in self.pending_log.drain(cp.pending_log..) {
            self.pending.remove(&p);
            if p.ix() < kept {
                self.unplaced_prevs.remove(&p);
            }
        }
        self.pending.retain(|e| e.ix() < kept);
        self.unplaced_prevs.retain(|e, _| e.ix() < kept);
        for d in self.deferred_log.drain(cp.deferred_log..) {
            self.deferred.remove(&d);
        }
        self.new_records.truncate(cp.new_records);
        self.states.truncate(cp.states);
        self.auth_index.truncate(cp.auth_nodes);
        let limit = cp.states;
        self.resolutions.retain(|k, (v, _)| (v.0 as usize) < limit && k.iter().all(|s| (s.0 as usize) < limit));
        self.dropped.truncate(cp.dropped);
        self.dropped_bytes = cp.dropped_bytes;
        self.dropped_total = cp.dropped_total;
        self.trim_dropped_log();
        self.room_id = cp.room_id;
        self.extremities = cp.extremities;
        self.redactions = Redactions::default();
        for i in 0..self.events.len() {
            let e = &self.events[i];
            if let (Facts::Redaction(Some(target)), EventStatus::Accepted) = (&e.facts, e.status) {
                let target = target.clone();
                self.redactions.pending.entry(target.clone()).or_default().push(e.idx);
                self.apply_pending_redactions(&target);
            }
        }
        *self.caches.borrow_mut() = Caches::default();
        self.mainlines.clear();
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

    /// Whether an event is an outlier (known only as state or auth chain,
    /// or a history event waiting for its prev events).
    pub fn is_outlier(&self, idx: EventIdx) -> bool {
        self.event(idx).outlier
    }

    /// History events stored as outliers until a rebuild places them.
    pub fn pending(&self) -> impl Iterator<Item = EventIdx> + '_ {
        self.pending.iter().copied()
    }

    /// The least depth of the room's timeline events (`min_depth` of
    /// `/get_missing_events`), 0 when there are none.
    pub fn min_depth(&self) -> i64 {
        self.events.iter().filter(|e| !e.outlier).map(|e| e.depth).min().unwrap_or(0)
    }

    /// The state after each of `states` (lists of stored state event IDs,
    /// e.g. remote `/state_ids` answers), resolved with the room version's
    /// state resolution: the state before an event whose prev events are
    /// these, as event IDs. Rejected events are left out of each state.
    pub fn resolve_remote_states(&mut self, states: &[Vec<String>]) -> Result<Vec<String>, String> {
        let mut ids: Vec<StateSetId> = Vec::with_capacity(states.len());
        for s in states {
            let map = self.remote_state(s).map_err(|(_, reason)| reason)?;
            ids.push(self.states.intern(map));
        }
        ids.sort();
        ids.dedup();
        let resolved = match ids.as_slice() {
            [] => StateMap::default(),
            [one] => self.state(*one).clone(),
            many => self.resolve_ids(many).state,
        };
        Ok(resolved.iter().map(|(_, e)| self.id(e).to_owned()).collect())
    }

    /// History events logged before their auth events (see [`Outcome::Deferred`]).
    pub fn deferred_count(&self) -> usize {
        self.deferred.len()
    }

    /// Auth events of deferred events that are neither stored nor deferred
    /// themselves: what to fetch when history stops bringing them.
    pub fn missing_auth_events(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .deferred
            .values()
            .flat_map(|d| d.auth_events.iter())
            .filter(|a| self.lookup(a).is_none() && !self.deferred.contains_key(&***a))
            .map(|a| a.to_string())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The backward extremities: prev events of timeline events (placed or
    /// pending) that are not in the timeline, by event ID — what
    /// `/backfill` is asked for. Sorted by the greatest depth of an event
    /// that lists them (newest gaps first), then by ID.
    pub fn backward_extremities(&self) -> Vec<(String, i64)> {
        let mut found: HashMap<&str, i64> = HashMap::new();
        let in_timeline = |p: &str| {
            self.deferred.contains_key(p)
                || self.lookup(p).is_some_and(|i| !self.event(i).outlier || self.pending.contains(&i))
        };
        let lists = self
            .unplaced_prevs
            .iter()
            .map(|(e, prevs)| (self.event(*e).depth, prevs))
            .chain(self.deferred.values().map(|d| (d.depth, &d.prev_events)));
        for (depth, prevs) in lists {
            for p in prevs.iter().filter(|p| !in_timeline(p)) {
                let d = found.entry(p).or_insert(depth);
                *d = (*d).max(depth);
            }
        }
        let mut out: Vec<(String, i64)> = found.into_iter().map(|(id, d)| (id.to_owned(), d)).collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// The SHA-256 state digest of contract.md: the sorted lines
    /// `type NUL state_key NUL event_id LF`, hashed.
    pub fn state_digest(&self, id: StateSetId) -> [u8; 32] {
        if let Some(d) = self.caches.borrow().digests.get(&id) {
            return *d;
        }
        let d = match self.key_order() {
            Some(order) => {
                // A line: its key's rank (the order), then its event (the text).
                let mut lines: Vec<u64> = self
                    .state(id)
                    .iter()
                    .map(|(k, e)| (u64::from(order.rank[k.0 as usize]) << 32) | u64::from(e.0))
                    .collect();
                lines.sort_unstable();
                let write = |line: u64, h: &mut Sha256| {
                    let (t, s) = self.key_name(order.key[(line >> 32) as usize]);
                    h.update(t);
                    h.update([0]);
                    h.update(s);
                    h.update([0]);
                    h.update(self.events.id(self.event(EventIdx(line as u32))));
                    h.update(b"\n");
                };
                self.caches.borrow_mut().digest_cursors.digest(lines, write)
            }
            None => digest_of(self.state(id).iter().map(|(k, e)| {
                let (t, s) = self.key_name(k);
                (t, s, self.events.id(self.event(e)))
            })),
        };
        self.caches.borrow_mut().digests.insert(id, d);
        d
    }

    /// The interned keys in digest line order (recomputed when keys were
    /// added), or `None` when a key holds a NUL (see [`KeyOrder`]).
    fn key_order(&self) -> Option<Arc<KeyOrder>> {
        if let Some((n, order)) = &self.caches.borrow().key_order {
            if *n == self.key_names.len() {
                return order.clone();
            }
        }
        let order = KeyOrder::of(&self.key_names).map(Arc::new);
        self.caches.borrow_mut().key_order = Some((self.key_names.len(), order.clone()));
        order
    }

    /// The union of the auth chains of a state's events, each event left out
    /// unless it is in another's chain (what `/state_ids` answers), sorted by
    /// arrival. Cached per state.
    pub fn state_auth_chain(&self, id: StateSetId) -> Arc<[EventIdx]> {
        if let Some((_, c)) = self.caches.borrow().state_auth_chains.iter().find(|(s, _)| *s == id) {
            return Arc::clone(c);
        }
        let mut set = NodeSet::with_capacity(self.auth_index.len());
        for (_, e) in self.state(id).iter() {
            if let Some(n) = self.event(e).auth_node() {
                self.auth_index.add_chain_to(AuthNode(n), &mut set);
            }
        }
        let chain: Arc<[EventIdx]> = set.iter().map(|n| self.auth_index.event(n)).collect();
        let mut caches = self.caches.borrow_mut();
        if caches.state_auth_chains.len() >= STATE_AUTH_CHAIN_CACHE {
            caches.state_auth_chains.pop_front();
        }
        caches.state_auth_chains.push_back((id, Arc::clone(&chain)));
        chain
    }

    /// The auth chain of any stored event (strict ancestors over
    /// `auth_events`), by an explicit-stack walk. For accepted state events
    /// prefer the index.
    pub fn auth_chain_of(&self, idx: EventIdx) -> Vec<EventIdx> {
        let mut seen: HashSet<EventIdx> = HashSet::new();
        let mut stack: Vec<EventIdx> = self.events.auth_events(self.event(idx)).to_vec();
        while let Some(e) = stack.pop() {
            if seen.insert(e) {
                stack.extend(self.events.auth_events(self.event(e)).iter().copied());
            }
        }
        let mut v: Vec<EventIdx> = seen.into_iter().collect();
        v.sort();
        v
    }
}

enum LimitError {
    Unpersistable(String),
    Reject(AuthRejection),
}

/// Canonical size and identifier lengths (the reference server's
/// `validate_event_for_room_version`): too large is unpersistable; an
/// identifier over 255 bytes but not 255 code points is only rejected
/// before room v11.
fn check_limits(
    json: &Map<String, Value>,
    canonical_size: Option<usize>,
    fields: [(&str, Option<&str>); 5],
    rules: &RoomVersionRules,
) -> Result<(), LimitError> {
    if canonical_size.unwrap_or_else(|| object_to_canonical_string(json).len()) > MAX_PDU_SIZE {
        return Err(LimitError::Unpersistable("event too large".into()));
    }
    for (name, value) in fields {
        if value.is_some_and(|v| v.chars().count() > MAX_ID_LEN) {
            return Err(LimitError::Unpersistable(format!("'{name}' too large")));
        }
    }
    for (name, value) in fields {
        if value.is_some_and(|v| v.len() > MAX_ID_LEN) {
            let reason = format!("'{name}' too large");
            return Err(if rules.strict_event_byte_limits {
                LimitError::Unpersistable(reason)
            } else {
                LimitError::Reject(AuthRejection::Malformed(reason))
            });
        }
    }
    Ok(())
}

/// Hashes state lines into the contract's digest.
pub fn digest_of<'a>(entries: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> [u8; 32] {
    let mut lines: Vec<Vec<u8>> = entries
        .map(|(t, s, e)| {
            let mut l = Vec::with_capacity(t.len() + s.len() + e.len() + 3);
            l.extend_from_slice(t.as_bytes());
            l.push(0);
            l.extend_from_slice(s.as_bytes());
            l.push(0);
            l.extend_from_slice(e.as_bytes());
            l.push(b'\n');
            l
        })
        .collect();
    lines.sort_unstable();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l);
    }
    h.finalize().into()
}

impl From<PduFormatError> for Outcome {
    fn from(e: PduFormatError) -> Self {
        Outcome::drop(None, DropStage::Parse, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IDs whose 32-bit hashes collide are all found (the second goes to
    /// the side map), and removing one leaves the other.
    #[test]
    fn id_index_survives_hash_collisions() {
        let mut first_with: HashMap<u32, String> = HashMap::new();
        let (a, b) = (0u64..)
            .find_map(|i| {
                let id = format!("${i}");
                match first_with.insert(id_hash(&id), id.clone()) {
                    Some(other) => Some((other, id)),
                    None => None,
                }
            })
            .expect("a collision (birthday bound: about 2^16 IDs)");
        assert_eq!(id_hash(&a), id_hash(&b));
        let mut events = Events::default();
        let mut index = IdIndex::default();
        for (i, id) in [&a, &b, &"$other".to_owned()].into_iter().enumerate() {
            let e = events.prepare(NewEvent {
                id,
                raw: "{}",
                prev_events: &[],
                pdu_prev_count: 0,
                first_prev: None,
                outlier: false,
                auth_events: &[],
                sender: Name::new("@a:x"),
                event_type: Name::new("m.room.message"),
                state_key: None,
                key: None,
                depth: 0,
                origin_server_ts: 0,
                facts: Facts::None,
                state_before: StateSetId::EMPTY,
                redacted_on_receipt: false,
            });
            events.push(e);
            index.insert(id, EventIdx(i as u32));
        }
        assert_eq!(index.get(&a, &events), Some(EventIdx(0)));
        assert_eq!(index.get(&b, &events), Some(EventIdx(1)));
        assert_eq!(index.get("$other", &events), Some(EventIdx(2)));
        assert_eq!(index.get("$absent", &events), None);
        index.remove(&a, EventIdx(0));
        assert_eq!(index.get(&a, &events), None);
        assert_eq!(index.get(&b, &events), Some(EventIdx(1)));
    }

    fn digest_by_lines(room: &Room, id: StateSetId) -> [u8; 32] {
        digest_of(room.state(id).iter().map(|(k, e)| {
            let (t, s) = room.key_name(k);
            (t, s, room.id(e))
        }))
    }

    /// The digest from ranked keys equals the contract's sorted lines, and
    /// a key holding NUL switches back to comparing whole lines.
    #[test]
    fn state_digests_by_key_rank_equal_sorted_lines() {
        let fixture = serde_json::to_vec(&crate::demo::demo_room(300)).expect("JSON");
        let replay = crate::conformance::replay(fixture.as_slice()).expect("replay");
        let mut room = replay.room;
        let ids: Vec<StateSetId> = (0..room.states().len() as u32).map(StateSetId).collect();
        assert!(ids.len() > 10, "{} states", ids.len());
        for id in &ids {
            assert_eq!(room.state_digest(*id), digest_by_lines(&room, *id));
        }
        assert!(room.key_order().is_some());
        // A new key shifts every rank (a line's number still names its
        // event, hence its text: kept hasher states stay right).
        let (t, s) = (intern(&mut room.strings, "a.first"), intern(&mut room.strings, ""));
        room.intern_key(&t, &s);
        room.caches.get_mut().digests.clear();
        for id in ids.iter().rev() {
            assert_eq!(room.state_digest(*id), digest_by_lines(&room, *id));
        }
        let t = intern(&mut room.strings, "m.room.member");
        let s = intern(&mut room.strings, "@a:x\u{0}");
        room.intern_key(&t, &s);
        *room.caches.get_mut() = Caches::default();
        assert!(room.key_order().is_none());
        for id in &ids {
            assert_eq!(room.state_digest(*id), digest_by_lines(&room, *id));
        }
    }
}
