//! State resolution v2 (rooms v2–v11) and v2.1 (room v12).
//!
//! Spec: `rooms/fragments/v2-state-res.md`; v2.1 in `rooms/v12.md` (MSC4297).
//! Given the states after each of an event's `prev_events`:
//!
//! 1. Split the states into the *unconflicted* state (keys with the same
//!    event in every state) and the *conflicted* set (everything else,
//!    including keys missing from some states).
//! 2. Compute the *auth difference*: the union minus the intersection of the
//!    full auth chains (events included) of each state; (v2.1) add the
//!    *conflicted state subgraph*, the events on an auth path between two
//!    conflicted events. The *full conflicted set* is the conflicted set plus
//!    those.
//! 3. Take the *power events* of the full conflicted set (power levels, join
//!    rules, create, kicks and bans) with their auth ancestors inside it, and
//!    order them by *reverse topological power ordering*.
//! 4. Apply them with the *iterative auth checks*, starting from the
//!    unconflicted state (v2; restricted to the keys the checks read) or from
//!    an empty state (v2.1).
//! 5. Order the remaining events by *mainline ordering* against the resolved
//!    power-levels event, and apply them the same way.
//! 6. Overlay the unconflicted state.
//!
//! Every step works on interned events ([`EventIdx`]) and the auth-chain
//! index; there is no recursion over the DAG (sorts use explicit heaps, walks
//! explicit loops).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::auth_chain::{AuthChainIndex, AuthNode};
use crate::auth_rules::{
    auth_types_for_event, check_state_dependent_auth_rules, is_creator, AuthState, CREATOR_POWER_LEVEL,
};
use crate::event::{Events, Facts, Membership, StateKeyIdx, StoredEvent};
use crate::ids::EventIdx;
use crate::power_levels::Level;
use crate::room_version::{RoomVersionRules, StateResVersion};
use crate::state_set::{common_chunks, Chunk, StateMap};

/// What state resolution reads: the room's events, its auth-chain index and
/// its `(type, state_key)` interner.
pub struct ResolveContext<'a> {
    /// The room version's rules.
    pub rules: &'static RoomVersionRules,
    /// Every stored event, by [`EventIdx`].
    pub events: &'a Events,
    /// The auth-chain index.
    pub auth_index: &'a AuthChainIndex,
    /// Looks up the interned key of `(type, state_key)`.
    pub key_of: &'a dyn Fn(&str, &str) -> Option<StateKeyIdx>,
    /// Mainlines kept between resolutions (the room's; clear it whenever
    /// events are removed, as their indexes are reused).
    pub mainlines: &'a MainlineCache,
}

/// How many mainlines [`MainlineCache`] keeps.
pub const MAINLINE_CACHE: usize = 4;

/// The mainlines of the last few resolved power-levels events.
///
/// A room's resolved power levels change rarely, while its mainline grows
/// with every power-levels change in its history: building it again for
/// every resolution made each resolution cost as much as the room's whole
/// power-levels history. A mainline depends only on the (immutable) auth
/// events of the events on it, so a kept one stays right until events are
/// removed ([`clear`](Self::clear)).
#[derive(Debug, Default)]
pub struct MainlineCache {
    recent: RefCell<VecDeque<(EventIdx, Mainline)>>,
}

/// A mainline: each of its power-levels events → its position (oldest = 1).
type Mainline = Arc<HashMap<EventIdx, usize>>;

impl MainlineCache {
    /// Forgets every kept mainline.
    pub fn clear(&self) {
        self.recent.borrow_mut().clear();
    }
}

/// The result of a resolution, with what the visualizer shows about it.
#[derive(Clone, Debug)]
pub struct Resolution {
    /// The resolved state.
    pub state: StateMap,
    /// The keys whose events differed between the inputs.
    pub conflicted_keys: Vec<StateKeyIdx>,
    /// Size of the full conflicted set (conflicted events + auth difference (+ subgraph)).
    pub full_conflicted_set: usize,
}

impl ResolveContext<'_> {
    /// A state event (state resolution reads no other).
    fn ev(&self, e: EventIdx) -> &StoredEvent {
        self.events.state_event(e.ix())
    }

    fn node(&self, e: EventIdx) -> AuthNode {
        AuthNode(self.events.auth_node_of(e.ix()).expect("state events are accepted state events, which are indexed"))
    }

    /// Resolves `states` (two or more distinct states).
    pub fn resolve(&self, states: &[&StateMap]) -> Resolution {
        // 1. Unconflicted state and conflicted set. Chunks every state holds
        //    are unconflicted as a whole; only the other chunks are compared.
        let (common, own) = common_chunks(states);
        let conflicted = conflicted_keys(&own);
        // A key is unconflicted iff it is not conflicted and in the states.
        let unconflicted = |k: StateKeyIdx| if conflicted.contains_key(&k) { None } else { states[0].get(k) };
        if conflicted.is_empty() {
            return Resolution { state: states[0].clone(), conflicted_keys: Vec::new(), full_conflicted_set: 0 };
        }
        let conflicted_events: Vec<EventIdx> = {
            let mut v: Vec<EventIdx> = conflicted.values().flatten().copied().collect();
            v.sort();
            v.dedup();
            v
        };
        // 2. Auth difference (+ conflicted subgraph in v2.1) → full conflicted set.
        let mut full: Vec<AuthNode> = self.auth_difference(states, &common, &own, &conflicted);
        if self.rules.state_res == StateResVersion::V2_1 {
            let conflicted_nodes: Vec<AuthNode> = conflicted_events.iter().map(|e| self.node(*e)).collect();
            full.extend(self.auth_index.conflicted_subgraph(&conflicted_nodes));
        }
        let mut full_set: Vec<EventIdx> = full.iter().map(|n| self.auth_index.event(*n)).collect();
        full_set.extend(conflicted_events.iter().copied());
        full_set.sort();
        full_set.dedup();
        let in_full: HashSet<EventIdx> = full_set.iter().copied().collect();

        // The base state the first pass starts from.
        let mut resolved: BTreeMap<StateKeyIdx, EventIdx> = BTreeMap::new();
        if self.rules.state_res != StateResVersion::V2_1 {
            let mut keys: HashSet<StateKeyIdx> = HashSet::new();
            if let Some(k) = (self.key_of)("m.room.power_levels", "") {
                keys.insert(k);
            }
            for e in &full_set {
                if let Ok(types) = auth_types_for_event(self.ev(*e), self.rules) {
                    keys.extend(types.iter().filter_map(|(t, k)| (self.key_of)(t, k)));
                }
            }
            for k in keys {
                if let Some(e) = unconflicted(k) {
                    resolved.insert(k, e);
                }
            }
        }

        // 3–4. Power events, sorted, then iteratively checked.
        let power: Vec<EventIdx> = full_set.iter().copied().filter(|e| is_power_event(self.ev(*e))).collect();
        let sorted_power = self.reverse_topological_power_sort(&power, &in_full);
        self.iterative_auth_checks(&sorted_power, &mut resolved);

        // 5. Mainline order for the rest, then checked on top.
        let power_set: HashSet<EventIdx> = sorted_power.iter().copied().collect();
        let leftover: Vec<EventIdx> = full_set.iter().copied().filter(|e| !power_set.contains(e)).collect();
        let pl_key = (self.key_of)("m.room.power_levels", "");
        let resolved_pl = pl_key.and_then(|k| resolved.get(&k).copied());
        let leftover = self.mainline_sort(&leftover, resolved_pl);
        self.iterative_auth_checks(&leftover, &mut resolved);

        // 6. The unconflicted state wins over anything resolved: the result
        //    is the first state (sharing its chunks) with every conflicted key
        //    set to its resolved event or removed, plus resolved keys that no
        //    state has.
        let mut changes: Vec<(StateKeyIdx, Option<EventIdx>)> = Vec::new();
        for k in conflicted.keys() {
            let r = resolved.get(k).copied();
            if r.is_some() || states[0].get(*k).is_some() {
                changes.push((*k, r));
            }
        }
        for (k, e) in &resolved {
            if !conflicted.contains_key(k) && states[0].get(*k).is_none() {
                changes.push((*k, Some(*e)));
            }
        }
        Resolution {
            state: states[0].with_changes(&changes),
            conflicted_keys: conflicted.keys().copied().collect(),
            full_conflicted_set: full_set.len(),
        }
    }

    /// Union minus intersection of the states' full auth chains. The
    /// entries every state holds (the common chunks, and the unconflicted
    /// entries of the others) are in every chain; what sets the states
    /// apart is their conflicted entries.
    fn auth_difference(
        &self,
        states: &[&StateMap],
        common: &[Chunk<'_>],
        own: &[Vec<Chunk<'_>>],
        conflicted: &BTreeMap<StateKeyIdx, Vec<EventIdx>>,
    ) -> Vec<AuthNode> {
        let mut in_all: Vec<EventIdx> = common.iter().flat_map(|c| c.entries()).map(|(_, e)| e).collect();
        let mut sets: Vec<Vec<AuthNode>> = vec![Vec::new(); own.len()];
        for (i, chunks) in own.iter().enumerate() {
            for (k, e) in chunks.iter().flat_map(|c| c.entries()) {
                if conflicted.contains_key(&k) {
                    sets[i].push(self.node(e));
                } else if i == 0 {
                    in_all.push(e);
                }
            }
        }
        // An event every state holds: the value of an unconflicted key.
        let in_all_states = |n: AuthNode| {
            let e = self.auth_index.event(n);
            self.ev(e).key.is_some_and(|k| !conflicted.contains_key(&k) && states[0].get(k) == Some(e))
        };
        self.auth_index.difference(&sets, in_all, |e| self.node(e), in_all_states)
    }

    /// The sender's power level read from the event's own auth events (used
    /// to order power events).
    fn power_level_for_sender(&self, e: EventIdx) -> i128 {
        let ev = self.ev(e);
        let mut pl = None;
        let mut create = None;
        for a in self.events.held_auth_events(ev).iter() {
            let aev = self.ev(*a);
            if aev.is("m.room.power_levels", "") {
                pl = Some(aev);
            }
            if aev.is("m.room.create", "") {
                create = Some(aev);
            }
        }
        if let Some(c) = create {
            if self.rules.creator_power && is_creator(c, &ev.sender, self.rules) {
                return CREATOR_POWER_LEVEL;
            }
        }
        let Some(pl) = pl else {
            let first_create =
                self.events.held_auth_events(ev).iter().map(|a| self.ev(*a)).find(|a| a.is("m.room.create", ""));
            if let Some(c) = first_create {
                let creator = if self.rules.implicit_room_creator {
                    Some(c.sender.to_string())
                } else {
                    match &c.facts {
                        Facts::Create(f) => f.creator.clone(),
                        _ => None,
                    }
                };
                if creator.as_deref() == Some(&*ev.sender) {
                    return 100;
                }
            }
            return 0;
        };
        let Facts::PowerLevels(levels) = &pl.facts else {
            return 0;
        };
        let level = match levels.users.get(&ev.sender) {
            Some(l) => l,
            None => match levels.scalar("users_default") {
                None | Some(Level::Null) => return 0,
                Some(l) => l,
            },
        };
        match level {
            Level::Int(i) => i,
            _ => 0,
        }
    }

    /// Kahn's algorithm over the auth DAG restricted to the full conflicted
    /// set, popping the smallest `(−sender power level, origin_server_ts,
    /// event_id)` among the events whose auth events are all placed.
    fn reverse_topological_power_sort(&self, power: &[EventIdx], in_full: &HashSet<EventIdx>) -> Vec<EventIdx> {
        // The graph: each power event and its auth ancestors inside the full
        // conflicted set, with the auth edges between them.
        let mut graph: HashMap<EventIdx, Vec<EventIdx>> = HashMap::new();
        let mut stack: Vec<EventIdx> = Vec::new();
        for p in power {
            stack.push(*p);
            while let Some(e) = stack.pop() {
                if graph.contains_key(&e) {
                    continue;
                }
                let mut edges: Vec<EventIdx> = Vec::new();
                for a in self.events.held_auth_events(self.ev(e)).iter() {
                    if in_full.contains(a) {
                        if !edges.contains(a) {
                            edges.push(*a);
                        }
                        if !graph.contains_key(a) {
                            stack.push(*a);
                        }
                    }
                }
                graph.insert(e, edges);
            }
        }
        let key = |e: EventIdx| {
            (
                Reverse((
                    Reverse(self.power_level_for_sender(e)),
                    self.ev(e).origin_server_ts,
                    self.events.resident_id(self.ev(e)).to_owned(),
                )),
                e,
            )
        };
        lexicographical_topological_sort(graph, key)
    }

    /// Applies `events` in order to `state`: each event that passes the auth
    /// rules against its own auth events overridden by the current state
    /// replaces its key.
    fn iterative_auth_checks(&self, events: &[EventIdx], state: &mut BTreeMap<StateKeyIdx, EventIdx>) {
        for e in events {
            let ev = self.ev(*e);
            if !ev.is_accepted() {
                continue;
            }
            let mut auth = AuthState::new();
            for a in self.events.held_auth_events(ev).iter() {
                let aev = self.ev(*a);
                if aev.is_accepted() && aev.is_state() {
                    auth.insert(aev);
                }
            }
            let Ok(types) = auth_types_for_event(ev, self.rules) else {
                continue;
            };
            for (t, k) in types {
                if let Some(cur) = (self.key_of)(&t, &k).and_then(|key| state.get(&key)) {
                    let cev = self.ev(*cur);
                    if cev.is_accepted() {
                        auth.insert(cev);
                    }
                }
            }
            if check_state_dependent_auth_rules(ev, &auth, self.rules).is_ok() {
                if let Some(k) = ev.key {
                    state.insert(k, *e);
                }
            }
        }
    }

    /// The first power-levels event among an event's auth events.
    fn pl_auth_event(&self, e: EventIdx) -> Option<EventIdx> {
        self.events.held_auth_events(self.ev(e)).iter().copied().find(|a| self.ev(*a).is("m.room.power_levels", ""))
    }

    /// Sorts by `(mainline position, origin_server_ts, event_id)`: the
    /// mainline is the chain of power-levels events from the resolved one
    /// back through their auth events (oldest = 1); an event's position is
    /// that of the first mainline event on its own power-levels chain (0 if
    /// none).
    fn mainline_sort(&self, events: &[EventIdx], resolved_pl: Option<EventIdx>) -> Vec<EventIdx> {
        if events.is_empty() {
            return Vec::new();
        }
        let depth_of = match resolved_pl {
            Some(r) => self.mainline(r),
            None => Arc::default(),
        };
        let mut memo: HashMap<EventIdx, usize> = HashMap::new();
        let mut keyed: Vec<((usize, i64, &str), EventIdx)> = events
            .iter()
            .map(|e| {
                let d = self.mainline_depth(*e, &depth_of, &mut memo);
                ((d, self.ev(*e).origin_server_ts, self.events.resident_id(self.ev(*e))), *e)
            })
            .collect();
        keyed.sort();
        keyed.into_iter().map(|(_, e)| e).collect()
    }

    /// The mainline of a power-levels event: it and the chain of
    /// power-levels events back through their auth events, each with its
    /// position (oldest = 1).
    fn mainline(&self, resolved_pl: EventIdx) -> Mainline {
        let cached = |p: EventIdx| -> Option<Mainline> {
            let mut recent = self.mainlines.recent.borrow_mut();
            let i = recent.iter().position(|(r, _)| *r == p)?;
            let hit = recent.remove(i).expect("just found");
            let m = Arc::clone(&hit.1);
            recent.push_back(hit);
            Some(m)
        };
        if let Some(m) = cached(resolved_pl) {
            return m;
        }
        // Walk down to a kept mainline (usually that of the previous
        // resolved power levels, which the new one cites) or to the root;
        // the new events sit on top of it.
        let mut fresh: Vec<EventIdx> = Vec::new();
        let mut below: Option<Mainline> = None;
        let mut seen: HashSet<EventIdx> = HashSet::new();
        let mut pl = Some(resolved_pl);
        while let Some(p) = pl {
            if let Some(m) = cached(p) {
                below = Some(m);
                break;
            }
            if !seen.insert(p) {
                break; // auth cycles cannot exist (auth events precede), but stay bounded
            }
            fresh.push(p);
            pl = self.pl_auth_event(p);
        }
        let mut depth_of: HashMap<EventIdx, usize> = below.map(|m| (*m).clone()).unwrap_or_default();
        let base = depth_of.len();
        depth_of.extend(fresh.iter().rev().enumerate().map(|(i, e)| (*e, base + i + 1)));
        let depth_of: Mainline = Arc::new(depth_of);
        let mut recent = self.mainlines.recent.borrow_mut();
        if recent.len() >= MAINLINE_CACHE {
            recent.pop_front();
        }
        recent.push_back((resolved_pl, Arc::clone(&depth_of)));
        depth_of
    }

    fn mainline_depth(
        &self,
        e: EventIdx,
        depth_of: &HashMap<EventIdx, usize>,
        memo: &mut HashMap<EventIdx, usize>,
    ) -> usize {
        let mut path: Vec<EventIdx> = Vec::new();
        let mut cur = Some(e);
        let mut result = 0;
        while let Some(c) = cur {
            if let Some(d) = depth_of.get(&c) {
                result = *d;
                break;
            }
            if let Some(d) = memo.get(&c) {
                result = *d;
                break;
            }
            if path.contains(&c) {
                break;
            }
            path.push(c);
            cur = self.pl_auth_event(c);
        }
        for p in path {
            if self.ev(p).is("m.room.power_levels", "") {
                memo.insert(p, result);
            }
        }
        result
    }
}

/// The conflicted set: key → the distinct events it has across the states
/// (a key missing from some state is conflicted), given each state's chunks
/// that not every state holds (see [`common_chunks`]).
pub fn conflicted_keys(own: &[Vec<Chunk<'_>>]) -> BTreeMap<StateKeyIdx, Vec<EventIdx>> {
    // One flat list of (key, state, event), sorted: each key's run says
    // whether every state has it with the same event.
    let mut all: Vec<(StateKeyIdx, usize, EventIdx)> = Vec::new();
    for (i, chunks) in own.iter().enumerate() {
        all.extend(chunks.iter().flat_map(|c| c.entries()).map(|(k, e)| (k, i, e)));
    }
    all.sort_unstable();
    let mut conflicted = BTreeMap::new();
    for run in all.chunk_by(|a, b| a.0 == b.0) {
        let unconflicted = run.len() == own.len() && run.iter().all(|x| x.2 == run[0].2);
        if !unconflicted {
            let mut evs: Vec<EventIdx> = run.iter().map(|x| x.2).collect();
            evs.sort_unstable();
            evs.dedup();
            conflicted.insert(run[0].0, evs);
        }
    }
    conflicted
}

/// Power events: power levels, join rules, the create event, and
/// memberships of `leave` or `ban` whose sender is not the target (kicks and bans).
pub fn is_power_event(e: &StoredEvent) -> bool {
    if e.is("m.room.power_levels", "") || e.is("m.room.join_rules", "") || e.is("m.room.create", "") {
        return true;
    }
    if &*e.event_type == "m.room.member" {
        if let Some(Membership::Leave | Membership::Ban) = e.membership() {
            return e.state_key.as_deref() != Some(&*e.sender);
        }
    }
    false
}

/// Kahn's algorithm on `graph` (node → the nodes it points to), emitting a
/// node once everything it points to is emitted, smallest `key` first.
pub fn lexicographical_topological_sort<K: Ord>(
    graph: HashMap<EventIdx, Vec<EventIdx>>,
    key: impl Fn(EventIdx) -> (Reverse<K>, EventIdx),
) -> Vec<EventIdx> {
    let mut outdegree: HashMap<EventIdx, usize> = HashMap::with_capacity(graph.len());
    let mut reverse: HashMap<EventIdx, Vec<EventIdx>> = HashMap::with_capacity(graph.len());
    let mut heap = BinaryHeap::new();
    for (node, edges) in &graph {
        outdegree.insert(*node, edges.len());
        reverse.entry(*node).or_default();
        for e in edges {
            reverse.entry(*e).or_default().push(*node);
        }
    }
    for (node, d) in &outdegree {
        if *d == 0 {
            heap.push(key(*node));
        }
    }
    let mut out = Vec::with_capacity(graph.len());
    while let Some((_, node)) = heap.pop() {
        out.push(node);
        for parent in reverse.get(&node).map(Vec::as_slice).unwrap_or_default() {
            let d = outdegree.get_mut(parent).expect("every parent is a node");
            *d -= 1;
            if *d == 0 {
                heap.push(key(*parent));
            }
        }
    }
    out
}
