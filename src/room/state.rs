//! The room's states: interned state keys, the forward extremities and the
//! current state, the state before an event (resolved at merge points),
//! the contract's state digests, and auth chains.

use std::collections::HashSet;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::auth_chain::AuthNode;
use crate::event::StateKeyIdx;
use crate::ids::{EventIdx, Name};
use crate::state_digest::KeyOrder;
use crate::state_res::{Resolution, ResolveContext};
use crate::state_set::{StateMap, StateSetId};

use super::{PageError, Room};

/// How many `/state_ids` auth chains stay cached (they are requested in
/// waves for the same few events; each can hold thousands of IDs).
pub const STATE_AUTH_CHAIN_CACHE: usize = 16;

/// What a resolution at a merge point did (for inspection).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolutionInfo {
    /// The distinct input states.
    pub inputs: Vec<StateSetId>,
    /// Keys that differed between them.
    pub conflicted_keys: Vec<StateKeyIdx>,
    /// Size of the full conflicted set.
    pub full_conflicted_set: usize,
}

impl Room {
    /// `(type, state_key)` of an interned key.
    pub fn key_name(&self, k: StateKeyIdx) -> (&str, &str) {
        let (t, s) = &self.key_names[k.0 as usize];
        (t, s)
    }

    /// The interned key of `(type, state_key)`, if any event ever used it.
    pub fn key_of(&self, ty: &str, state_key: &str) -> Option<StateKeyIdx> {
        self.keys.get(&self.key_names, ty, state_key)
    }

    pub(super) fn intern_key(&mut self, ty: &Name, state_key: &Name) -> StateKeyIdx {
        self.keys.intern(&mut self.key_names, ty, state_key)
    }

    /// The forward extremities: accepted events that no accepted event lists
    /// in `prev_events`.
    pub fn forward_extremities(&self) -> impl Iterator<Item = EventIdx> + '_ {
        self.extremities.keys().copied()
    }

    /// A state map, built from its chunks if it is not built (read back
    /// from the page store when they are rows).
    ///
    /// # Errors
    /// A row of the states' pools could not be read back, or is damaged.
    pub fn state(&self, id: StateSetId) -> Result<&StateMap, PageError> {
        self.states.get(id, self.events.pages())
    }

    /// The event at `key` in state `id`, reading only what finding that one
    /// key needs (a query that wants one entry of a large state it has not
    /// built: history visibility).
    ///
    /// # Errors
    /// As [`state`](Self::state).
    pub fn state_entry(&self, id: StateSetId, key: StateKeyIdx) -> Result<Option<EventIdx>, PageError> {
        self.states.lookup(id, key, self.events.pages())
    }

    /// The room's current state: the resolution of the states after the
    /// forward extremities.
    ///
    /// # Errors
    /// As [`state`](Self::state).
    pub fn current_state(&mut self) -> Result<StateSetId, PageError> {
        let ids = sorted_states(self.extremities.values().copied());
        self.resolve_states(ids)
    }

    /// The current state (cached until the next stored event).
    ///
    /// # Errors
    /// As [`state`](Self::state).
    pub fn current_state_map(&self) -> Result<Arc<StateMap>, PageError> {
        if let Some(c) = &self.caches.borrow().current {
            return Ok(Arc::clone(c));
        }
        let m = Arc::new(self.compute_current_state()?);
        self.caches.borrow_mut().current = Some(Arc::clone(&m));
        Ok(m)
    }

    fn compute_current_state(&self) -> Result<StateMap, PageError> {
        let ids = sorted_states(self.extremities.values().copied());
        Ok(match ids.as_slice() {
            [] => StateMap::default(),
            [one] => self.state(*one)?.clone(),
            many => match self.resolutions.get(many) {
                Some((id, _)) => self.state(*id)?.clone(),
                None => self.resolve_ids(many)?.state,
            },
        })
    }

    /// How a merge point's state was resolved, when it was.
    ///
    /// # Errors
    /// The page store failed to read a prev event back.
    pub fn resolution_for(&self, prev_events: &[EventIdx]) -> Result<Option<Arc<ResolutionInfo>>, PageError> {
        let ids = self.states_after(prev_events)?;
        Ok(self.resolutions.get(&ids).map(|(_, info)| Arc::clone(info)))
    }

    /// The states after `events`, sorted, each once.
    fn states_after(&self, events: &[EventIdx]) -> Result<Vec<StateSetId>, PageError> {
        let ids: Result<Vec<StateSetId>, PageError> = events.iter().map(|e| Ok(self.event(*e)?.state_after)).collect();
        Ok(sorted_states(ids?))
    }

    pub(super) fn resolve_ids(&self, ids: &[StateSetId]) -> Result<Resolution, PageError> {
        let maps: Vec<&StateMap> = ids.iter().map(|id| self.state(*id)).collect::<Result<_, _>>()?;
        let key_of = |t: &str, k: &str| self.key_of(t, k);
        let ctx = ResolveContext {
            rules: self.rules,
            events: &self.events,
            auth_index: &self.auth_index,
            key_of: &key_of,
            mainlines: &self.mainlines,
        };
        Ok(ctx.resolve(&maps))
    }

    /// The state before an event with these prev events: the states after
    /// each of them, resolved if they differ (a rejected event's state after
    /// is its state before).
    ///
    /// # Errors
    /// The page store failed to read a prev event back.
    pub fn resolve_after(&mut self, prev_events: &[EventIdx]) -> Result<StateSetId, PageError> {
        let ids = self.states_after(prev_events)?;
        self.resolve_states(ids)
    }

    /// States `ids` (sorted, each once) resolved, if they differ.
    fn resolve_states(&mut self, ids: Vec<StateSetId>) -> Result<StateSetId, PageError> {
        Ok(match ids.as_slice() {
            [] => StateSetId::EMPTY,
            [one] => *one,
            many => {
                if let Some((id, _)) = self.resolutions.get(many) {
                    return Ok(*id);
                }
                let res = self.resolve_ids(many)?;
                let id = self.states.intern(res.state, self.events.pages());
                let info = ResolutionInfo {
                    inputs: ids.clone(),
                    conflicted_keys: res.conflicted_keys,
                    full_conflicted_set: res.full_conflicted_set,
                };
                self.resolutions.insert(ids, (id, Arc::new(info)));
                id
            }
        })
    }

    /// The SHA-256 state digest of contract.md: the sorted lines
    /// `type NUL state_key NUL event_id LF`, hashed.
    ///
    /// # Errors
    /// As [`state`](Self::state).
    pub fn state_digest(&self, id: StateSetId) -> Result<[u8; 32], PageError> {
        if let Some(d) = self.caches.borrow().digests.get(&id) {
            return Ok(*d);
        }
        let state = self.state(id)?;
        let d = match self.key_order() {
            Some(order) => {
                // A line: its key's rank (the order), then its event (the text).
                let mut lines: Vec<u64> =
                    state.iter().map(|(k, e)| (u64::from(order.rank[k.0 as usize]) << 32) | u64::from(e.0)).collect();
                lines.sort_unstable();
                let write = |line: u64, h: &mut Sha256| {
                    let (t, s) = self.key_name(order.key[(line >> 32) as usize]);
                    h.update(t);
                    h.update([0]);
                    h.update(s);
                    h.update([0]);
                    h.update(self.state_id(EventIdx(line as u32)));
                    h.update(b"\n");
                };
                self.caches.borrow_mut().digest_cursors.digest(lines, write)
            }
            None => digest_of(state.iter().map(|(k, e)| {
                let (t, s) = self.key_name(k);
                (t, s, self.state_id(e))
            })),
        };
        self.caches.borrow_mut().digests.insert(id, d);
        Ok(d)
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
    ///
    /// # Errors
    /// As [`state`](Self::state).
    pub fn state_auth_chain(&self, id: StateSetId) -> Result<Arc<[EventIdx]>, PageError> {
        if let Some((_, c)) = self.caches.borrow().state_auth_chains.iter().find(|(s, _)| *s == id) {
            return Ok(Arc::clone(c));
        }
        let nodes: Vec<AuthNode> =
            self.state(id)?.iter().filter_map(|(_, e)| self.events.auth_node_of(e.ix()).map(AuthNode)).collect();
        let set = self.auth_index.chains(&nodes, false);
        let chain: Arc<[EventIdx]> = set.iter().map(|n| self.auth_index.event(n)).collect();
        let mut caches = self.caches.borrow_mut();
        if caches.state_auth_chains.len() >= STATE_AUTH_CHAIN_CACHE {
            caches.state_auth_chains.pop_front();
        }
        caches.state_auth_chains.push_back((id, Arc::clone(&chain)));
        Ok(chain)
    }

    /// The auth chain of any stored event (strict ancestors over
    /// `auth_events`), by an explicit-stack walk. For accepted state events
    /// prefer the index.
    ///
    /// # Errors
    /// The page store failed to read back an event of the chain (a
    /// rejected event's auth events may be any stored events).
    pub fn auth_chain_of(&self, idx: EventIdx) -> Result<Vec<EventIdx>, PageError> {
        let mut seen: HashSet<EventIdx> = HashSet::new();
        let mut stack: Vec<EventIdx> = self.auth_events(idx)?.to_vec();
        while let Some(e) = stack.pop() {
            if seen.insert(e) {
                stack.extend(self.auth_events(e)?.iter().copied());
            }
        }
        let mut v: Vec<EventIdx> = seen.into_iter().collect();
        v.sort();
        Ok(v)
    }
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

/// `ids` sorted, each once.
fn sorted_states(ids: impl IntoIterator<Item = StateSetId>) -> Vec<StateSetId> {
    let mut ids: Vec<StateSetId> = ids.into_iter().collect();
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{intern, Caches};

    fn digest_by_lines(room: &Room, id: StateSetId) -> [u8; 32] {
        digest_of(room.state(id).unwrap().iter().map(|(k, e)| {
            let (t, s) = room.key_name(k);
            (t, s, room.state_id(e))
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
            assert_eq!(room.state_digest(*id).unwrap(), digest_by_lines(&room, *id));
        }
        assert!(room.key_order().is_some());
        // A new key shifts every rank (a line's number still names its
        // event, hence its text: kept hasher states stay right).
        let (t, s) = (intern(&mut room.strings, "a.first"), intern(&mut room.strings, ""));
        room.intern_key(&t, &s);
        room.caches.get_mut().digests.clear();
        for id in ids.iter().rev() {
            assert_eq!(room.state_digest(*id).unwrap(), digest_by_lines(&room, *id));
        }
        let t = intern(&mut room.strings, "m.room.member");
        let s = intern(&mut room.strings, "@a:x\u{0}");
        room.intern_key(&t, &s);
        *room.caches.get_mut() = Caches::default();
        assert!(room.key_order().is_none());
        for id in &ids {
            assert_eq!(room.state_digest(*id).unwrap(), digest_by_lines(&room, *id));
        }
    }
}
