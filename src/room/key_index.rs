//! The room's state keys, `(type, state_key)` → [`StateKeyIdx`]: a hash
//! table of the keys' numbers alone, each compared through the room's
//! `key_names` (a number's names). A map holding the two names beside each
//! number took 24 bytes a slot; this takes 4. At Matrix HQ's size (100,006
//! keys) that is 0.6 MiB instead of 3.3 (docs/benchmarks.md, "Eleventh
//! session").

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::event::StateKeyIdx;
use crate::ids::Name;

/// The numbers of a room's state keys, found by the keys' names.
#[derive(Default)]
pub(super) struct KeyIndex {
    table: HashTable<StateKeyIdx>,
    /// SipHash with the process's random keys, as `std`'s maps: state keys
    /// are chosen by whoever sends events.
    hasher: std::hash::RandomState,
}

impl KeyIndex {
    /// The index of `names` (a key listed twice is found at its last place,
    /// as a map filled in order would).
    pub(super) fn of(names: &[(Name, Name)]) -> Self {
        let mut index = Self { table: HashTable::with_capacity(names.len()), ..Self::default() };
        for i in 0..names.len() {
            let k = StateKeyIdx(u32::try_from(i).expect("fewer than 2^32 state keys"));
            let (t, s) = &names[i];
            index.insert(names, t, s, k);
        }
        index
    }

    fn hash(&self, ty: &str, state_key: &str) -> u64 {
        self.hasher.hash_one((ty, state_key))
    }

    /// The number of `(ty, state_key)`, if interned.
    pub(super) fn get(&self, names: &[(Name, Name)], ty: &str, state_key: &str) -> Option<StateKeyIdx> {
        let h = self.hash(ty, state_key);
        self.table.find(h, |k| is(names, *k, ty, state_key)).copied()
    }

    /// Sets the number of `(ty, state_key)` to `k` (`names` already lists
    /// `k`, or will before the next call: only the keys already in the
    /// table are read, to rehash them when it grows).
    pub(super) fn insert(&mut self, names: &[(Name, Name)], ty: &str, state_key: &str, k: StateKeyIdx) {
        let h = self.hash(ty, state_key);
        let hasher = &self.hasher;
        let rehash = |k: &StateKeyIdx| {
            let (t, s) = &names[k.0 as usize];
            hasher.hash_one((&**t, &**s))
        };
        match self.table.find_mut(h, |k| is(names, *k, ty, state_key)) {
            Some(slot) => *slot = k,
            None => {
                self.table.insert_unique(h, k, rehash);
            }
        }
    }
}

/// Whether key `k` is `(ty, state_key)`.
fn is(names: &[(Name, Name)], k: StateKeyIdx, ty: &str, state_key: &str) -> bool {
    names.get(k.0 as usize).is_some_and(|(t, s)| **t == *ty && **s == *state_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are found by content through growths, absent ones are not, and
    /// a key listed twice is found at its last place.
    #[test]
    fn keys_are_found_by_their_names() {
        let mut names: Vec<(Name, Name)> = Vec::new();
        let mut index = KeyIndex::default();
        for i in 0..5000u32 {
            let (t, s) = (Name::new(&format!("m.type.{}", i % 7)), Name::new(&format!("@u{i}:example.org")));
            names.push((t.clone(), s.clone()));
            index.insert(&names, &t, &s, StateKeyIdx(i));
        }
        for i in 0..5000u32 {
            let got = index.get(&names, &format!("m.type.{}", i % 7), &format!("@u{i}:example.org"));
            assert_eq!(got, Some(StateKeyIdx(i)));
        }
        assert_eq!(index.get(&names, "m.type.1", "@u0:example.org"), None);
        assert_eq!(index.get(&names, "m.type.0", "@u5000:example.org"), None);
        names.push((Name::new("m.type.3"), Name::new("@u3:example.org")));
        let again = KeyIndex::of(&names);
        assert_eq!(again.get(&names, "m.type.3", "@u3:example.org"), Some(StateKeyIdx(5000)));
        assert_eq!(again.get(&names, "m.type.4", "@u4:example.org"), Some(StateKeyIdx(4)));
    }
}
