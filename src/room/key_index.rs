//! The room's state keys, `(type, state_key)` → [`StateKeyIdx`]: a hash
//! table of the keys' numbers alone, each compared through the room's
//! `key_names` (a number's names). A map holding the two names beside each
//! number took 24 bytes a slot; this takes 4. At Matrix HQ's size (100,006
//! keys) that is 0.6 MiB instead of 3.3 (docs/benchmarks.md, "Eleventh
//! session").

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
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
        for (i, (t, s)) in names.iter().enumerate() {
            let k = StateKeyIdx(u32::try_from(i).expect("fewer than 2^32 state keys"));
            match index.entry(names, t, s) {
                Entry::Occupied(mut slot) => *slot.get_mut() = k,
                Entry::Vacant(slot) => {
                    slot.insert(k);
                }
            }
        }
        index
    }

    /// The number of `(ty, state_key)`, if interned.
    pub(super) fn get(&self, names: &[(Name, Name)], ty: &str, state_key: &str) -> Option<StateKeyIdx> {
        self.table.find(hash(&self.hasher, ty, state_key), |k| is(names, *k, ty, state_key)).copied()
    }

    /// The number of `(ty, state_key)`, interned now (listed at the end of
    /// `names`) if it was not: one hash and one probe either way.
    pub(super) fn intern(&mut self, names: &mut Vec<(Name, Name)>, ty: &Name, state_key: &Name) -> StateKeyIdx {
        match self.entry(names, ty, state_key) {
            Entry::Occupied(slot) => *slot.get(),
            Entry::Vacant(slot) => {
                let k = StateKeyIdx(u32::try_from(names.len()).expect("fewer than 2^32 state keys"));
                slot.insert(k);
                names.push((ty.clone(), state_key.clone()));
                k
            }
        }
    }

    /// The table's slot for `(ty, state_key)` (keys already in the table
    /// are read from `names` to rehash them when it grows).
    fn entry(&mut self, names: &[(Name, Name)], ty: &str, state_key: &str) -> Entry<'_, StateKeyIdx> {
        let hasher = &self.hasher;
        let rehash = |k: &StateKeyIdx| {
            let (t, s) = &names[k.0 as usize];
            hash(hasher, t, s)
        };
        self.table.entry(hash(hasher, ty, state_key), |k| is(names, *k, ty, state_key), rehash)
    }
}

/// The hash of a key's names.
fn hash(hasher: &std::hash::RandomState, ty: &str, state_key: &str) -> u64 {
    hasher.hash_one((ty, state_key))
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
            assert_eq!(index.intern(&mut names, &t, &s), StateKeyIdx(i));
            assert_eq!(index.intern(&mut names, &t, &s), StateKeyIdx(i), "interned once");
        }
        assert_eq!(names.len(), 5000);
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
