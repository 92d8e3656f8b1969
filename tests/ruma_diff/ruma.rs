//! The roomdag room as ruma-state-res sees it: every stored event converted
//! to a PDU type implementing [`ruma_state_res::Event`], full auth chains and
//! (v2.1) the conflicted state subgraph computed here from the PDUs' own
//! `auth_events` (not from roomdag's index), and wrappers around
//! [`ruma_state_res::resolve`] and ruma's authorization checks.
//!
//! How ruma wants rejected events (ruma-state-res 0.18 `src/state_res.rs`,
//! `iterative_auth_checks`; `src/event_auth.rs`): they stay fetchable with
//! `rejected() == true`; `resolve` skips rejected auth events, and
//! `check_state_independent_auth_rules` rejects an event citing one. States
//! never hold rejected events (a rejected event's state after is its state
//! before, as in Synapse), so they only appear as auth events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use roomdag::state_set::StateSetId;
use roomdag::{EventIdx, EventStatus, Room};
use ruma_common::room_version_rules::{AuthorizationRules, RoomVersionRules, StateResolutionV2Rules};
use ruma_common::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId,
};
use ruma_events::{StateEventType, TimelineEventType};
use ruma_state_res::utils::event_id_set::EventIdSet;
use ruma_state_res::{Event, StateMap};
use serde_json::value::RawValue;
use serde_json::Value;

/// A stored event as ruma reads it. `auth_events` are the PDU's own (in v12
/// without the create event, which ruma derives from the room ID).
#[derive(Clone, Debug)]
pub struct RPdu {
    pub event_id: OwnedEventId,
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub event_type: TimelineEventType,
    pub state_key: Option<String>,
    pub content: Box<RawValue>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub rejected: bool,
}

impl Event for RPdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &OwnedEventId {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.event_type
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&OwnedEventId> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        self.rejected
    }
}

/// Ruma's rules for a room version.
pub fn rules_for(version: &str) -> (AuthorizationRules, StateResolutionV2Rules) {
    let id = RoomVersionId::try_from(version).expect("room version ID");
    let rules: RoomVersionRules = id.rules().unwrap_or_else(|| panic!("ruma knows room version {version}"));
    let v2 = *rules.state_res.v2_rules().unwrap_or_else(|| panic!("room version {version} uses state res v2"));
    (rules.authorization, v2)
}

/// A fixed-size bitset over event indices.
#[derive(Clone, Default)]
pub struct Bits(Vec<u64>);

impl Bits {
    fn with_len(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn or(&mut self, o: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a |= b;
        }
    }
    fn intersects(&self, o: &Bits) -> bool {
        self.0.iter().zip(&o.0).any(|(a, b)| a & b != 0)
    }
    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0
            .iter()
            .enumerate()
            .flat_map(|(w, bits)| (0..64).filter(move |b| bits & (1 << b) != 0).map(move |b| w * 64 + b))
    }
}

/// Every stored event of a room, converted once.
pub struct RumaRoom {
    pub auth_rules: AuthorizationRules,
    pub res_rules: StateResolutionV2Rules,
    pub pdus: Vec<Arc<RPdu>>,
    pub by_id: HashMap<OwnedEventId, usize>,
    /// Per event: its strict auth ancestors (by the PDUs' `auth_events`).
    pub chain: Vec<Bits>,
    /// Set in the view made by [`RumaRoom::with_default_join_rule`].
    pub default_join_rule: Option<Arc<RPdu>>,
}

/// The ID of the stand-in `m.room.join_rules` event of
/// [`RumaRoom::with_default_join_rule`].
pub const DEFAULT_JOIN_RULE_ID: &str = "$synapse-default-join-rule";

impl RumaRoom {
    pub fn new(room: &Room) -> Self {
        let (auth_rules, res_rules) = rules_for(room.rules().id);
        let n = room.events().len();
        let mut pdus = Vec::with_capacity(n);
        let mut by_id = HashMap::with_capacity(n);
        for i in 0..n {
            let idx = EventIdx(i as u32);
            let raw = room.raw(idx).expect("stored PDU");
            let json: Value = serde_json::from_str(&raw).expect("stored PDU is JSON");
            let ids = |k: &str| -> Vec<OwnedEventId> {
                json[k]
                    .as_array()
                    .expect("id list")
                    .iter()
                    .map(|v| OwnedEventId::try_from(v.as_str().expect("event ID")).expect("ruma parses the event ID"))
                    .collect()
            };
            let content_text = serde_json::to_string(&json["content"]).expect("content");
            let redacts = json
                .get("redacts")
                .or_else(|| json["content"].get("redacts"))
                .and_then(Value::as_str)
                .and_then(|s| OwnedEventId::try_from(s).ok());
            let ts = json["origin_server_ts"].as_u64().expect("non-negative origin_server_ts");
            let pdu = RPdu {
                event_id: OwnedEventId::try_from(&*room.id(idx).unwrap()).expect("ruma parses the event ID"),
                room_id: json
                    .get("room_id")
                    .and_then(Value::as_str)
                    .map(|s| OwnedRoomId::try_from(s).expect("ruma parses the room ID")),
                sender: OwnedUserId::try_from(json["sender"].as_str().expect("sender")).expect("user ID"),
                origin_server_ts: MilliSecondsSinceUnixEpoch(js_int::UInt::try_from(ts).expect("ts fits")),
                event_type: TimelineEventType::from(json["type"].as_str().expect("type")),
                state_key: json.get("state_key").and_then(Value::as_str).map(str::to_owned),
                content: RawValue::from_string(content_text).expect("raw content"),
                prev_events: ids("prev_events"),
                auth_events: ids("auth_events"),
                redacts,
                rejected: room.event(idx).unwrap().status == EventStatus::Rejected,
            };
            by_id.insert(pdu.event_id.clone(), i);
            pdus.push(Arc::new(pdu));
        }
        let mut chain: Vec<Bits> = Vec::with_capacity(n);
        for i in 0..n {
            let mut c = Bits::with_len(n);
            for a in &pdus[i].auth_events {
                let a = by_id[a];
                assert!(a < i, "auth events arrive first");
                c.set(a);
                let ca = chain[a].clone();
                c.or(&ca);
            }
            chain.push(c);
        }
        RumaRoom { auth_rules, res_rules, pdus, by_id, chain, default_join_rule: None }
    }

    pub fn fetch(&self, id: &EventId) -> Option<Arc<RPdu>> {
        match self.by_id.get(id) {
            Some(i) => Some(Arc::clone(&self.pdus[*i])),
            None => self.default_join_rule.as_ref().filter(|d| d.event_id == *id).cloned(),
        }
    }

    /// A join-rules event with Synapse's default, `invite` (an event that
    /// is in no state and no auth chain).
    fn synapse_default_join_rule(&self) -> Arc<RPdu> {
        let create = &self.pdus[0];
        Arc::new(RPdu {
            event_id: OwnedEventId::try_from(DEFAULT_JOIN_RULE_ID).expect("event ID"),
            room_id: self.pdus.get(1).and_then(|p| p.room_id.clone()),
            sender: create.sender.clone(),
            origin_server_ts: create.origin_server_ts,
            event_type: TimelineEventType::RoomJoinRules,
            state_key: Some(String::new()),
            content: RawValue::from_string(r#"{"join_rule":"invite"}"#.to_owned()).expect("raw"),
            prev_events: Vec::new(),
            auth_events: Vec::new(),
            redacts: None,
            rejected: false,
        })
    }

    /// The same room, except that ruma reads a missing `m.room.join_rules`
    /// the way Synapse does (see `classify` in `tests/ruma_diff.rs`): every
    /// join lists a stand-in join-rules event with Synapse's default
    /// (`invite`) *first* in its auth events, so that ruma's
    /// `iterative_auth_checks` (which inserts the auth events in order, then
    /// overrides them with the resolved state's) only ever reads it when
    /// neither a real auth event nor the state has a join-rules event. The
    /// auth chains and the conflicted subgraph are computed without it, and
    /// nothing else in `resolve` reads join-rules auth events.
    pub fn with_default_join_rule(&self) -> RumaRoom {
        let default = self.synapse_default_join_rule();
        let pdus = self
            .pdus
            .iter()
            .map(|p| {
                let is_join = p.event_type == TimelineEventType::RoomMember
                    && serde_json::from_str::<Value>(p.content.get()).ok().and_then(|c| c.get("membership").cloned())
                        == Some(Value::from("join"));
                if !is_join {
                    return Arc::clone(p);
                }
                let mut q = RPdu::clone(p);
                q.auth_events.insert(0, default.event_id.clone());
                Arc::new(q)
            })
            .collect();
        self.with_pdus(pdus, Some(default))
    }

    /// The same room, except that power-levels events are checked by ruma
    /// the way Synapse checks them (see `ABSENT_POWER_LEVEL` in
    /// `tests/ruma_diff.rs`): each one's content is rewritten by
    /// [`synapse_absent_levels`] against `against` (a power-levels event),
    /// or, when that is `None`, against the power levels it cites itself.
    /// In a resolution ruma checks a power-levels event against the power
    /// levels resolved so far, which the caller can only guess (the inputs'
    /// power levels, or the cited ones), so `classify` tries each guess; a
    /// disagreement none of them explains still fails the test.
    pub fn with_synapse_absent_levels(&self, against: Option<&OwnedEventId>) -> RumaRoom {
        let is_pl = |p: &RPdu| p.event_type == TimelineEventType::RoomPowerLevels && p.state_key.as_deref() == Some("");
        let fixed = against.and_then(|id| self.by_id.get(id)).map(|i| &self.pdus[*i]);
        let pdus = self
            .pdus
            .iter()
            .map(|p| {
                if !is_pl(p) {
                    return Arc::clone(p);
                }
                let current = match fixed {
                    Some(f) if f.event_id != p.event_id => Some(f),
                    Some(_) => None,
                    None => p
                        .auth_events
                        .iter()
                        .filter_map(|a| self.by_id.get(a))
                        .map(|i| &self.pdus[*i])
                        .find(|a| is_pl(a)),
                };
                match current {
                    Some(current) => Arc::new(synapse_absent_levels(p, current)),
                    None => Arc::clone(p),
                }
            })
            .collect();
        self.with_pdus(pdus, self.default_join_rule.clone())
    }

    /// The same room with its PDUs rewritten (same IDs, same auth chains).
    fn with_pdus(&self, pdus: Vec<Arc<RPdu>>, default_join_rule: Option<Arc<RPdu>>) -> RumaRoom {
        RumaRoom {
            auth_rules: self.auth_rules.clone(),
            res_rules: self.res_rules,
            pdus,
            by_id: self.by_id.clone(),
            chain: self.chain.clone(),
            default_join_rule,
        }
    }

    /// A roomdag state as a ruma state map.
    pub fn state_map(&self, room: &Room, st: StateSetId) -> StateMap<OwnedEventId> {
        room.state(st)
            .unwrap()
            .iter()
            .map(|(k, e)| {
                let (t, s) = room.key_name(k);
                ((StateEventType::from(t), s.to_owned()), self.pdus[e.ix()].event_id.clone())
            })
            .collect()
    }

    /// The full auth chain of a state: its events and their auth ancestors.
    fn full_auth_chain(&self, state: &StateMap<OwnedEventId>) -> EventIdSet<OwnedEventId> {
        let mut bits = Bits::with_len(self.pdus.len());
        for id in state.values() {
            let i = self.by_id[id];
            bits.set(i);
            bits.or(&self.chain[i]);
        }
        bits.ones().map(|i| self.pdus[i].event_id.clone()).collect()
    }

    /// (v2.1) The conflicted state subgraph: the conflicted events, and every
    /// event that is both an auth ancestor of a conflicted event and has a
    /// conflicted event among its own auth ancestors.
    fn conflicted_subgraph(&self, conflicted: &StateMap<Vec<OwnedEventId>>) -> EventIdSet<OwnedEventId> {
        let n = self.pdus.len();
        let mut cset = Bits::with_len(n);
        let mut ancestors = Bits::with_len(n);
        for id in conflicted.values().flatten() {
            let i = self.by_id[id];
            cset.set(i);
            ancestors.or(&self.chain[i]);
        }
        let mut out: EventIdSet<OwnedEventId> = cset.ones().map(|i| self.pdus[i].event_id.clone()).collect();
        for x in ancestors.ones() {
            if self.chain[x].intersects(&cset) {
                out.insert(self.pdus[x].event_id.clone());
            }
        }
        out
    }

    /// Resolves `states` with ruma: `Ok(state)` or ruma's error.
    pub fn resolve(&self, states: &[StateMap<OwnedEventId>]) -> Result<StateMap<OwnedEventId>, String> {
        let chains: Vec<EventIdSet<OwnedEventId>> = states.iter().map(|s| self.full_auth_chain(s)).collect();
        ruma_state_res::resolve(
            &self.auth_rules,
            &self.res_rules,
            states,
            chains,
            |id| self.fetch(id),
            |conflicted| Some(self.conflicted_subgraph(conflicted)),
        )
        .map_err(|e| format!("ruma resolve failed: {e}"))
    }

    /// Ruma's verdict on receipt for a stored event, given the state before
    /// it: the state-independent rules, then the state-dependent rules
    /// against its auth events and against the state before.
    ///
    /// `shims` make ruma apply Synapse's rule where the two are known to
    /// differ (see `classify` in `tests/ruma_diff.rs`).
    pub fn verdict(&self, i: usize, state_before: &StateMap<OwnedEventId>, shims: Shims) -> Result<(), String> {
        let ev = &self.pdus[i];
        ruma_state_res::check_state_independent_auth_rules(&self.auth_rules, ev, |id| self.fetch(id))
            .map_err(|e| format!("state-independent: {e}"))?;
        if ev.event_type == TimelineEventType::RoomCreate {
            return Ok(());
        }
        let default = shims.default_join_rule.then(|| self.synapse_default_join_rule());
        let fallback = |t: &StateEventType, k: &str| {
            default.clone().filter(|_| *t == StateEventType::RoomJoinRules && k.is_empty())
        };
        let mut by_auth: HashMap<(StateEventType, String), Arc<RPdu>> = HashMap::new();
        for a in &ev.auth_events {
            let a = self.fetch(a).expect("auth event");
            let key = (StateEventType::from(a.event_type.to_string()), a.state_key.clone().unwrap_or_default());
            by_auth.insert(key, a);
        }
        if self.auth_rules.room_create_event_id_as_room_id {
            let create = &self.pdus[0];
            by_auth.insert((StateEventType::RoomCreate, String::new()), Arc::clone(create));
        }
        let pl_key = (StateEventType::RoomPowerLevels, String::new());
        let incoming = |current: Option<&Arc<RPdu>>| -> RPdu {
            match current {
                Some(c) if shims.synapse_absent_levels => synapse_absent_levels(ev, c),
                _ => RPdu::clone(ev),
            }
        };
        let ev1 = incoming(by_auth.get(&pl_key));
        ruma_state_res::check_state_dependent_auth_rules(&self.auth_rules, &ev1, |t, k| {
            by_auth.get(&(t.clone(), k.to_owned())).cloned().or_else(|| fallback(t, k))
        })
        .map_err(|e| format!("against its auth events: {e}"))?;
        let ev2 = incoming(state_before.get(&pl_key).and_then(|id| self.fetch(id)).as_ref());
        ruma_state_res::check_state_dependent_auth_rules(&self.auth_rules, &ev2, |t, k| {
            state_before.get(&(t.clone(), k.to_owned())).and_then(|id| self.fetch(id)).or_else(|| fallback(t, k))
        })
        .map_err(|e| format!("against the state before: {e}"))
    }

    /// A state map keyed by strings, for comparing and printing.
    pub fn named(&self, state: &StateMap<OwnedEventId>) -> BTreeMap<(String, String), String> {
        state.iter().map(|((t, s), e)| ((t.to_string(), s.clone()), e.to_string())).collect()
    }
}

/// Which of Synapse's rules ruma is made to apply.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shims {
    /// A missing `m.room.join_rules` reads as `invite`.
    pub default_join_rule: bool,
    /// A power-level field absent from the current or the new content is
    /// not compared (through its default) with the sender's level.
    pub synapse_absent_levels: bool,
}

/// `ev` (a power-levels event checked against `current`) rewritten so that
/// ruma's check of it is Synapse's: for each scalar field present on one side
/// only, ruma compares the missing side's *default* with the sender's level
/// (`check_room_power_levels`, ruma-state-res `src/event_auth.rs`), Synapse
/// only the present side (`_check_power_levels`, `synapse/event_auth.py`).
/// The rewrite makes the field unchanged for ruma (copies the current value,
/// or drops the new one) and moves its value to a fresh key of `events`,
/// which ruma checks the way Synapse checks the field: an added entry is
/// rejected iff its value exceeds the sender's level. Nothing else reads
/// the rewritten content.
fn synapse_absent_levels(ev: &RPdu, current: &RPdu) -> RPdu {
    let mut out = RPdu::clone(ev);
    if ev.event_type != TimelineEventType::RoomPowerLevels || ev.state_key.as_deref() != Some("") {
        return out;
    }
    let (Ok(Value::Object(cur)), Ok(Value::Object(mut new))) =
        (serde_json::from_str::<Value>(current.content.get()), serde_json::from_str::<Value>(ev.content.get()))
    else {
        return out;
    };
    let mut moved: Vec<(String, Value)> = Vec::new();
    for f in ["users_default", "events_default", "state_default", "ban", "kick", "invite", "redact"] {
        match (cur.get(f), new.get(f).cloned()) {
            (Some(c), None) => {
                new.insert(f.into(), c.clone());
                moved.push((f.into(), c.clone()));
            }
            (None, Some(n)) => {
                new.remove(f);
                moved.push((f.into(), n));
            }
            _ => {}
        }
    }
    if moved.is_empty() {
        return out;
    }
    let events = new.entry("events").or_insert_with(|| Value::Object(Default::default()));
    let Some(events) = events.as_object_mut() else { return out };
    for (f, v) in moved {
        events.insert(format!("org.example.synapse-rule.{f}"), v);
    }
    out.content = RawValue::from_string(Value::Object(new).to_string()).expect("raw content");
    out
}
