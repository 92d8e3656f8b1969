//! Stored events: the original bytes plus a compact parsed view.
//!
//! A [`StoredEvent`] keeps the PDU exactly as it arrived (`raw`) and only the
//! fields the engine needs to answer questions without reparsing: interned
//! strings, interned references to other events ([`EventIdx`]), and the few
//! content facts that auth rules, state resolution, visibility and redaction
//! read ([`Facts`]).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::ids::{EventId, EventIdx};
use crate::power_levels::PowerLevels;
use crate::room_version::RoomVersionRules;
use crate::state_set::StateSetId;

/// An interned `(type, state_key)` pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateKeyIdx(pub u32);

/// What happened to a stored event on receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Passed every check; may become state and a forward extremity.
    Accepted,
    /// Failed the auth rules; stored, but never state nor an extremity.
    Rejected,
}

/// An `m.room.member` membership value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    /// `join`
    Join,
    /// `invite`
    Invite,
    /// `leave`
    Leave,
    /// `ban`
    Ban,
    /// `knock`
    Knock,
    /// Any other value (including non-strings).
    Other,
    /// No `membership` key.
    Missing,
}

impl Membership {
    fn from_content(content: &Map<String, Value>) -> Self {
        match content.get("membership") {
            None => Membership::Missing,
            Some(Value::String(s)) => match s.as_str() {
                "join" => Membership::Join,
                "invite" => Membership::Invite,
                "leave" => Membership::Leave,
                "ban" => Membership::Ban,
                "knock" => Membership::Knock,
                _ => Membership::Other,
            },
            Some(_) => Membership::Other,
        }
    }

    /// The spec name, for messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            Membership::Join => "join",
            Membership::Invite => "invite",
            Membership::Leave => "leave",
            Membership::Ban => "ban",
            Membership::Knock => "knock",
            Membership::Other => "(unknown)",
            Membership::Missing => "(missing)",
        }
    }
}

/// An `m.room.join_rules` rule (`content.join_rule`, default `invite`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinRule {
    /// `public`
    Public,
    /// `invite` (also the default)
    Invite,
    /// `knock`
    Knock,
    /// `restricted`
    Restricted,
    /// `knock_restricted`
    KnockRestricted,
    /// `private` or anything else.
    Other,
}

/// Facts about an `m.room.create` event.
#[derive(Clone, Debug)]
pub struct CreateFacts {
    /// `content.creator` if it is a string (rooms v1–v10).
    pub creator: Option<String>,
    /// `content["m.federate"]` is absent or `true`.
    pub federate: bool,
    /// `content.additional_creators` string entries (room v12).
    pub additional_creators: Vec<String>,
    /// The raw `content.additional_creators`, when present (for the create rule).
    pub additional_creators_raw: Option<Value>,
    /// `content.room_version` (default `"1"`), when it is a string.
    pub room_version: Option<String>,
}

/// Facts about an `m.room.member` event.
#[derive(Clone, Debug)]
pub struct MemberFacts {
    /// `content.membership`.
    pub membership: Membership,
    /// `content.join_authorised_via_users_server`, raw.
    pub authorising_user: Option<Value>,
    /// `content.third_party_invite`, raw.
    pub third_party_invite: Option<Value>,
}

/// The few content facts the engine reads, by event type.
#[derive(Clone, Debug, Default)]
pub enum Facts {
    /// Nothing the engine needs.
    #[default]
    None,
    /// `m.room.create` (with empty state key).
    Create(Box<CreateFacts>),
    /// `m.room.member`.
    Member(Box<MemberFacts>),
    /// `m.room.power_levels` (with empty state key).
    PowerLevels(Arc<PowerLevels>),
    /// `m.room.join_rules` (with empty state key).
    JoinRules(JoinRule),
    /// `m.room.history_visibility` (with empty state key): the value if a string.
    HistoryVisibility(Option<Box<str>>),
    /// `m.room.third_party_invite`: the content.
    ThirdPartyInvite(Box<Map<String, Value>>),
    /// `m.room.redaction`: the target if a string.
    Redaction(Option<Box<str>>),
    /// `m.room.server_acl` (with empty state key): the content.
    ServerAcl(Arc<Map<String, Value>>),
}

impl Facts {
    /// Extracts the facts of an event from its (possibly redacted) JSON.
    pub fn extract(event: &Map<String, Value>, rules: &RoomVersionRules) -> Self {
        let empty = Map::new();
        let content = event.get("content").and_then(Value::as_object).unwrap_or(&empty);
        let ty = event.get("type").and_then(Value::as_str).unwrap_or_default();
        let state_key = event.get("state_key").and_then(Value::as_str);
        let empty_key = state_key == Some("");
        match ty {
            "m.room.create" if empty_key => Facts::Create(Box::new(CreateFacts {
                creator: content.get("creator").and_then(Value::as_str).map(str::to_owned),
                federate: matches!(content.get("m.federate"), None | Some(Value::Bool(true))),
                additional_creators: match content.get("additional_creators") {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                    _ => Vec::new(),
                },
                additional_creators_raw: content.get("additional_creators").cloned(),
                room_version: match content.get("room_version") {
                    None => Some("1".into()),
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => None,
                },
            })),
            "m.room.member" if state_key.is_some() => Facts::Member(Box::new(MemberFacts {
                membership: Membership::from_content(content),
                authorising_user: content.get("join_authorised_via_users_server").cloned(),
                third_party_invite: content.get("third_party_invite").cloned(),
            })),
            "m.room.power_levels" if empty_key => Facts::PowerLevels(Arc::new(PowerLevels::from_content(content))),
            "m.room.join_rules" if empty_key => Facts::JoinRules(match content.get("join_rule") {
                None => JoinRule::Invite,
                Some(Value::String(s)) => match s.as_str() {
                    "public" => JoinRule::Public,
                    "invite" => JoinRule::Invite,
                    "knock" => JoinRule::Knock,
                    "restricted" => JoinRule::Restricted,
                    "knock_restricted" => JoinRule::KnockRestricted,
                    _ => JoinRule::Other,
                },
                Some(_) => JoinRule::Other,
            }),
            "m.room.history_visibility" if empty_key => {
                Facts::HistoryVisibility(content.get("history_visibility").and_then(Value::as_str).map(Into::into))
            }
            "m.room.third_party_invite" if state_key.is_some() => Facts::ThirdPartyInvite(Box::new(content.clone())),
            "m.room.redaction" => {
                let target = if rules.updated_redaction_rules { content.get("redacts") } else { event.get("redacts") };
                Facts::Redaction(target.and_then(Value::as_str).map(Into::into))
            }
            "m.room.server_acl" if empty_key => Facts::ServerAcl(Arc::new(content.clone())),
            _ => Facts::None,
        }
    }
}

/// One stored event.
///
/// Kept small (the room holds one per event): the event ID and the PDU share
/// one allocation, the prev and auth events another, and rarely needed
/// fields (rejection reasons) live in side tables of the room.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    /// Its position in the room (arrival order).
    pub idx: EventIdx,
    /// The event ID followed by the PDU exactly as received (shared with the
    /// store's record).
    text: Arc<str>,
    id_len: u8,
    n_prev: u8,
    /// Accepted or rejected.
    pub status: EventStatus,
    /// The content hash failed: stored and served in redacted form.
    pub redacted_on_receipt: bool,
    /// A redaction whose sender lacked the `redact` level in some auth check
    /// (v3+ "handling redactions": it applies only to same-server targets).
    pub recheck_redaction: bool,
    /// `prev_events` in PDU order, then the auth events (in room v12 with
    /// the implied create event appended).
    links: Box<[EventIdx]>,
    /// `sender` (interned).
    pub sender: Arc<str>,
    /// `type` (interned).
    pub event_type: Arc<str>,
    /// `state_key` (interned), for state events.
    pub state_key: Option<Arc<str>>,
    /// The interned `(type, state_key)`, for state events.
    pub key: Option<StateKeyIdx>,
    /// `depth`.
    pub depth: i64,
    /// `origin_server_ts`.
    pub origin_server_ts: i64,
    /// Content facts.
    pub facts: Facts,
    /// The state before the event.
    pub state_before: StateSetId,
    /// The state after the event.
    pub state_after: StateSetId,
    /// Position in the auth-chain index (accepted state events only).
    pub auth_node: Option<u32>,
}

/// The fields of a new [`StoredEvent`].
pub struct NewEvent<'a> {
    /// Its position in the room.
    pub idx: EventIdx,
    /// The event ID.
    pub id: &'a str,
    /// The PDU as received.
    pub raw: &'a str,
    /// Resolved `prev_events`.
    pub prev_events: &'a [EventIdx],
    /// Resolved auth events.
    pub auth_events: &'a [EventIdx],
    /// Interned sender.
    pub sender: Arc<str>,
    /// Interned type.
    pub event_type: Arc<str>,
    /// Interned state key.
    pub state_key: Option<Arc<str>>,
    /// Interned `(type, state_key)`.
    pub key: Option<StateKeyIdx>,
    /// `depth`.
    pub depth: i64,
    /// `origin_server_ts`.
    pub origin_server_ts: i64,
    /// Content facts.
    pub facts: Facts,
    /// The state before it.
    pub state_before: StateSetId,
    /// The content hash failed.
    pub redacted_on_receipt: bool,
}

impl StoredEvent {
    /// Builds an accepted event whose state after is its state before (the
    /// room fixes both up as it stores it).
    ///
    /// # Panics
    /// If the event ID is longer than 255 bytes or there are more than 255
    /// prev events (the receipt checks refuse both before this point).
    pub fn new(n: NewEvent<'_>) -> Self {
        let id_len = u8::try_from(n.id.len()).expect("event IDs are at most 255 bytes");
        let n_prev = u8::try_from(n.prev_events.len()).expect("at most 20 prev events");
        let mut text = String::with_capacity(n.id.len() + n.raw.len());
        text.push_str(n.id);
        text.push_str(n.raw);
        let mut links = Vec::with_capacity(n.prev_events.len() + n.auth_events.len());
        links.extend_from_slice(n.prev_events);
        links.extend_from_slice(n.auth_events);
        Self {
            idx: n.idx,
            text: Arc::from(text),
            id_len,
            n_prev,
            status: EventStatus::Accepted,
            redacted_on_receipt: n.redacted_on_receipt,
            recheck_redaction: false,
            links: links.into(),
            sender: n.sender,
            event_type: n.event_type,
            state_key: n.state_key,
            key: n.key,
            depth: n.depth,
            origin_server_ts: n.origin_server_ts,
            facts: n.facts,
            state_before: n.state_before,
            state_after: n.state_before,
            auth_node: None,
        }
    }

    /// The event ID.
    pub fn id(&self) -> &str {
        &self.text[..self.id_len as usize]
    }

    /// The event ID as an owned [`EventId`].
    pub fn event_id(&self) -> EventId {
        EventId::new(self.id()).expect("stored event IDs start with $")
    }

    /// The PDU exactly as received.
    pub fn raw(&self) -> &str {
        &self.text[self.id_len as usize..]
    }

    /// The shared text (event ID followed by the PDU) and the ID's length.
    pub fn shared_text(&self) -> (Arc<str>, usize) {
        (Arc::clone(&self.text), self.id_len as usize)
    }

    /// `prev_events`, in PDU order.
    pub fn prev_events(&self) -> &[EventIdx] {
        &self.links[..self.n_prev as usize]
    }

    /// The auth events, in PDU order (room v12: with the create event appended).
    pub fn auth_events(&self) -> &[EventIdx] {
        &self.links[self.n_prev as usize..]
    }

    /// Whether this is a state event.
    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// Whether this event is `(type, state_key)`.
    pub fn is(&self, ty: &str, state_key: &str) -> bool {
        &*self.event_type == ty && self.state_key.as_deref() == Some(state_key)
    }

    /// The membership of an `m.room.member` event.
    pub fn membership(&self) -> Option<&Membership> {
        match &self.facts {
            Facts::Member(m) => Some(&m.membership),
            _ => None,
        }
    }

    /// Accepted?
    pub fn is_accepted(&self) -> bool {
        self.status == EventStatus::Accepted
    }
}

/// Events in arrival order, in fixed-size chunks (no reallocation spikes as
/// a room grows, and no capacity wasted beyond the last chunk).
#[derive(Clone, Debug, Default)]
pub struct Events {
    chunks: Vec<Vec<StoredEvent>>,
    len: usize,
}

const EVENTS_CHUNK: usize = 1024;

impl Events {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends an event.
    pub fn push(&mut self, e: StoredEvent) {
        if self.chunks.last().is_none_or(|c| c.len() == EVENTS_CHUNK) {
            self.chunks.push(Vec::with_capacity(EVENTS_CHUNK));
        }
        self.chunks.last_mut().expect("just ensured").push(e);
        self.len += 1;
    }

    /// The event at `i`.
    pub fn get(&self, i: usize) -> Option<&StoredEvent> {
        self.chunks.get(i / EVENTS_CHUNK).and_then(|c| c.get(i % EVENTS_CHUNK))
    }

    /// Every event in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &StoredEvent> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Removes and returns the events from `len` on.
    pub fn truncate(&mut self, len: usize) -> Vec<StoredEvent> {
        let mut removed = Vec::new();
        while self.len > len {
            let last = self.chunks.last_mut().expect("len > 0");
            removed.push(last.pop().expect("chunks are never empty"));
            if last.is_empty() {
                self.chunks.pop();
            }
            self.len -= 1;
        }
        removed.reverse();
        removed
    }
}

impl std::ops::Index<usize> for Events {
    type Output = StoredEvent;
    fn index(&self, i: usize) -> &StoredEvent {
        &self.chunks[i / EVENTS_CHUNK][i % EVENTS_CHUNK]
    }
}

impl std::ops::IndexMut<usize> for Events {
    fn index_mut(&mut self, i: usize) -> &mut StoredEvent {
        &mut self.chunks[i / EVENTS_CHUNK][i % EVENTS_CHUNK]
    }
}
