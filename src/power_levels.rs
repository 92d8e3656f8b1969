//! `m.room.power_levels` content, read the way the reference server reads it.
//!
//! Power levels were loosely typed before room version 10: a level may be a
//! JSON integer, a numeric string (`" +10 "`), a float or a boolean, and the
//! reference server converts them with Python's `int()`. [`Level`] keeps the
//! converted value, or records why it cannot be converted; using such a
//! level rejects the event being authorised.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::event::{MemberFacts, Membership};
use crate::ids::Name;

/// One power-level value after Python `int()` conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// A usable level.
    Int(i128),
    /// JSON `null`: treated as absent where the reference does so.
    Null,
    /// A value `int()` refuses (a non-numeric string, an object, …).
    Invalid,
}

impl Level {
    /// Converts a JSON value like Python's `int()`.
    pub fn from_json(v: &Value) -> Self {
        match v {
            Value::Null => Level::Null,
            Value::Bool(b) => Level::Int(i128::from(*b)),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Level::Int(i128::from(i))
                } else if let Some(i) =
                    parse_python_int(&n.to_string()).filter(|_| !n.to_string().contains(['.', 'e', 'E']))
                {
                    Level::Int(i)
                } else {
                    match n.as_f64() {
                        Some(f) if f.is_finite() => Level::Int(f.trunc() as i128),
                        _ => Level::Invalid,
                    }
                }
            }
            Value::String(s) => parse_python_int(s).map_or(Level::Invalid, Level::Int),
            Value::Array(_) | Value::Object(_) => Level::Invalid,
        }
    }

    /// Whether the JSON value was a true integer (`type(v) is int` in Python:
    /// not a bool, not a float, not a string).
    pub fn is_strict_int(v: &Value) -> bool {
        matches!(v, Value::Number(n) if !n.to_string().contains(['.', 'e', 'E']))
    }
}

/// Python's `int(str)`: surrounding whitespace, an optional sign, decimal
/// digits with single underscores between them. Saturates at ±i128::MAX.
pub fn parse_python_int(s: &str) -> Option<i128> {
    let t = s.trim_matches(|c: char| c.is_whitespace());
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let mut value: i128 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(10)?;
        value = value.saturating_mul(10).saturating_add(i128::from(d));
    }
    Some(if neg { -value } else { value })
}

/// Where the names and chunks of level maps come from: a room shares them
/// between its events ([`Unshared`] makes new ones).
pub trait LevelInterner {
    /// The name `s`.
    fn name(&mut self, s: &str) -> Name;
    /// A chunk holding `entries`.
    fn chunk(&mut self, entries: &[(Name, Level)]) -> LevelChunk;
    /// A membership event's facts (a room shares one value per plain
    /// membership: most of a big room's state).
    fn member(&mut self, m: MemberFacts) -> Arc<MemberFacts> {
        Arc::new(m)
    }
}

/// Every name and chunk its own.
pub struct Unshared;

impl LevelInterner for Unshared {
    fn name(&mut self, s: &str) -> Name {
        Name::new(s)
    }
    fn chunk(&mut self, entries: &[(Name, Level)]) -> LevelChunk {
        Arc::from(entries)
    }
}

/// A run of a level map's entries, shared by the maps that hold it.
pub type LevelChunk = Arc<[(Name, Level)]>;

/// What makes a chunk of some entries (a pool's, or a plain copy).
pub type MakeChunk<'a> = dyn FnMut(&[(Name, Level)]) -> LevelChunk + 'a;

/// Level-map chunks end after a key whose name's address hashes to this
/// many trailing zero bits (chunks average 32 entries)…
const LEVEL_CHUNK_BITS: u32 = 5;
/// …or at this length.
const LEVEL_CHUNK_MAX: usize = 256;

/// The hash that cuts and pools chunks: the name's address (a room's names
/// are interned, so within a room equal keys are one address and cut the
/// same way; names that are not interned only share less).
fn name_hash(n: &Name) -> u64 {
    (n.addr() as u64 ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9).rotate_left(29)
}

/// The chunks of a room's level maps, by content, so that a power-levels
/// event that changes one user's level shares every other chunk of its
/// `users` map with the event before (a 100,000-member room keeps a map of
/// that size per `m.room.power_levels` event).
///
/// It also holds one shared value per plain membership (one that says
/// nothing but `membership`): a 100,000-member room's membership events
/// then cost no allocation each for their facts.
#[derive(Debug, Default)]
pub struct LevelChunkPool {
    by_hash: std::collections::HashMap<u64, Vec<LevelChunk>>,
    plain_members: [Option<Arc<MemberFacts>>; Membership::COUNT],
}

impl LevelChunkPool {
    /// `m`, shared with every other plain membership of its kind.
    pub fn member(&mut self, m: MemberFacts) -> Arc<MemberFacts> {
        if m.authorising_user.is_some() || m.third_party_invite.is_some() {
            return Arc::new(m);
        }
        let at = m.membership.clone() as usize;
        Arc::clone(self.plain_members[at].get_or_insert_with(|| Arc::new(m)))
    }

    /// The pooled chunk equal to `entries`, pooling it if new.
    pub fn chunk(&mut self, entries: &[(Name, Level)]) -> LevelChunk {
        let h = entries.iter().fold(entries.len() as u64, |h, (k, l)| {
            let lv = match l {
                Level::Int(v) => *v as u64 ^ (*v >> 64) as u64,
                Level::Null => 0xA5,
                Level::Invalid => 0x5A,
            };
            (h.rotate_left(7) ^ name_hash(k) ^ lv.wrapping_mul(0x94D0_49BB_1331_11EB))
                .wrapping_mul(0x2545_F491_4F6C_DD1D)
        });
        let same = self.by_hash.entry(h).or_default();
        if let Some(c) = same.iter().find(|c| ***c == *entries) {
            return Arc::clone(c);
        }
        let c: LevelChunk = Arc::from(entries);
        same.push(Arc::clone(&c));
        c
    }

    /// Number of distinct chunks held.
    pub fn len(&self) -> usize {
        self.by_hash.values().map(Vec::len).sum()
    }

    /// Whether no chunk is held.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// The entries of a level map, sorted by key, in chunks cut by content
/// ([`LevelChunkPool`] shares them between maps).
#[derive(Clone, Default)]
pub struct LevelEntries {
    chunks: Box<[LevelChunk]>,
    len: usize,
}

impl PartialEq for LevelEntries {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for LevelEntries {}

/// As the map it is (the chunks are how it is held, not what it says).
impl std::fmt::Debug for LevelEntries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl LevelEntries {
    /// Entries sorted by key with no key twice, cut into chunks made by
    /// `chunk` (a [`LevelChunkPool`], or a plain copy).
    pub fn from_sorted(entries: &[(Name, Level)], chunk: &mut MakeChunk<'_>) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "sorted, each key once");
        let mut chunks = Vec::new();
        let mut start = 0;
        for (i, (k, _)) in entries.iter().enumerate() {
            if name_hash(k).trailing_zeros() >= LEVEL_CHUNK_BITS || i + 1 - start == LEVEL_CHUNK_MAX {
                chunks.push(chunk(&entries[start..=i]));
                start = i + 1;
            }
        }
        if start < entries.len() {
            chunks.push(chunk(&entries[start..]));
        }
        Self { chunks: chunks.into_boxed_slice(), len: entries.len() }
    }

    /// Entries in any order, a repeated key keeping its last level (like
    /// collecting into a map), cut by `chunk`.
    pub fn from_entries(mut v: Vec<(Name, Level)>, chunk: &mut MakeChunk<'_>) -> Self {
        if !v.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable: of equal keys the last one given ends last, and is kept.
            v.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out: Vec<(Name, Level)> = Vec::with_capacity(v.len());
            for e in v {
                match out.last_mut() {
                    Some(last) if last.0 == e.0 => *last = e,
                    _ => out.push(e),
                }
            }
            v = out;
        }
        Self::from_sorted(&v, chunk)
    }

    /// Entries held as `chunks`, each sorted by key (the caller's word: a
    /// room image checks each chunk once as it reads it, not once per map
    /// that holds it), each non-empty and after the chunk before.
    pub(crate) fn from_chunks(chunks: Vec<LevelChunk>) -> Result<Self, &'static str> {
        if chunks.iter().any(|c| c.is_empty()) {
            return Err("a level map holds an empty chunk");
        }
        if !chunks.windows(2).all(|w| w[0][w[0].len() - 1].0 < w[1][0].0) {
            return Err("a level map's chunks are out of key order");
        }
        let len = chunks.iter().map(|c| c.len()).sum();
        Ok(Self { chunks: chunks.into_boxed_slice(), len })
    }

    /// The level of `key`.
    pub fn get(&self, key: &str) -> Option<&Level> {
        // The first chunk whose last key is not below `key` is the only one that may hold it.
        let at = self.chunks.partition_point(|c| &*c[c.len() - 1].0 < key);
        let c = self.chunks.get(at)?;
        c.binary_search_by(|(k, _)| (**k).cmp(key)).ok().map(|i| &c[i].1)
    }

    /// Whether `key` has an entry.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Name> {
        self.iter().map(|(k, _)| k)
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Name, &Level)> {
        self.chunks.iter().flat_map(|c| c.iter().map(|(k, l)| (k, l)))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks (shared with other maps of the same pool).
    pub fn chunks(&self) -> &[LevelChunk] {
        &self.chunks
    }
}

/// Built like a map (see [`LevelEntries::from_entries`]), unshared.
impl FromIterator<(Name, Level)> for LevelEntries {
    fn from_iter<I: IntoIterator<Item = (Name, Level)>>(iter: I) -> Self {
        Self::from_entries(iter.into_iter().collect(), &mut |c| Arc::from(c))
    }
}

/// A map of levels (`users`, `events`, `notifications`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelMap {
    /// The entries; absent when the key itself is absent.
    pub entries: LevelEntries,
    /// Every value was a true JSON integer.
    pub all_strict_ints: bool,
    /// The key was present but not a JSON object.
    pub not_an_object: bool,
    /// That value, when it is not an object (what rule 10's comparison
    /// loop iterates before room v10; see [`for_each_level_change`]).
    pub other: Option<Value>,
}

impl LevelMap {
    fn from_json(v: Option<&Value>, names: &mut dyn LevelInterner) -> Self {
        match v {
            None => Self { all_strict_ints: true, ..Self::default() },
            Some(Value::Object(m)) => Self {
                entries: LevelEntries::from_entries(
                    m.iter().map(|(k, v)| (names.name(k), Level::from_json(v))).collect(),
                    &mut |c| names.chunk(c),
                ),
                all_strict_ints: m.values().all(Level::is_strict_int),
                not_an_object: false,
                other: None,
            },
            Some(v) => Self { not_an_object: true, all_strict_ints: false, other: Some(v.clone()), ..Self::default() },
        }
    }

    /// `map.get(key)`, with `null` read as absent.
    pub fn get(&self, key: &str) -> Option<Level> {
        self.entries.get(key).copied().filter(|l| *l != Level::Null)
    }

    /// Python's `list(container)`: an object's keys, an array's elements
    /// (which must be hashable for the `set` they go into), a string's
    /// characters; anything else raises `TypeError`.
    fn py_keys(&self) -> Result<Vec<PyKey<'_>>, &'static str> {
        match &self.other {
            None => Ok(self.entries.keys().map(|k| PyKey::Str((&**k).into())).collect()),
            Some(Value::Array(items)) => {
                items.iter().map(|v| PyKey::from_scalar(v).ok_or("unhashable level key")).collect()
            }
            Some(Value::String(s)) => Ok(s.chars().map(|c| PyKey::Str(c.to_string().into())).collect()),
            Some(_) => Err("level container is not iterable"),
        }
    }

    /// Python's `key in container` (an object: key lookup; an array: an
    /// equal element; a string: a substring).
    fn py_contains(&self, key: &PyKey<'_>) -> Result<bool, &'static str> {
        match (&self.other, key) {
            (None, PyKey::Str(k)) => Ok(self.entries.contains_key(k.as_ref())),
            (None, _) => Ok(false),
            (Some(Value::Array(items)), _) => Ok(items.iter().any(|v| PyKey::from_scalar(v).as_ref() == Some(key))),
            (Some(Value::String(s)), PyKey::Str(k)) => Ok(s.contains(k.as_ref())),
            _ => Err("'in <string>' requires a string"),
        }
    }

    /// Python's `int(container[key])` for a key that [`py_contains`](Self::py_contains).
    fn py_level(&self, key: &PyKey<'_>) -> Result<i128, &'static str> {
        let level = match (&self.other, key) {
            (None, PyKey::Str(k)) => self.entries.get(k.as_ref()).copied().unwrap_or(Level::Invalid),
            (Some(Value::Array(items)), PyKey::Int(i)) => {
                let len = i128::try_from(items.len()).unwrap_or(i128::MAX);
                let at = if *i < 0 { *i + len } else { *i };
                let item = usize::try_from(at).ok().and_then(|at| items.get(at)).ok_or("list index out of range")?;
                Level::from_json(item)
            }
            _ => return Err("indices must be integers"),
        };
        match level {
            Level::Int(i) => Ok(i),
            Level::Null | Level::Invalid => Err("level is not an integer"),
        }
    }
}

/// A key of a level container as Python sees it: a hashable JSON scalar
/// (`true` is `1`, and `1 == 1.0`).
#[derive(Clone, Debug)]
enum PyKey<'a> {
    Str(std::borrow::Cow<'a, str>),
    Int(i128),
    Float(f64),
    None,
}

impl PyKey<'_> {
    fn from_scalar(v: &Value) -> Option<PyKey<'_>> {
        match v {
            Value::String(s) => Some(PyKey::Str(s.as_str().into())),
            Value::Bool(b) => Some(PyKey::Int(i128::from(*b))),
            Value::Null => Some(PyKey::None),
            Value::Number(n) => {
                let text = n.to_string();
                if text.contains(['.', 'e', 'E']) {
                    Some(PyKey::Float(n.as_f64().unwrap_or(f64::NAN)))
                } else {
                    Some(PyKey::Int(parse_python_int(&text).unwrap_or(i128::MAX)))
                }
            }
            Value::Array(_) | Value::Object(_) => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            PyKey::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl PartialEq for PyKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PyKey::Str(a), PyKey::Str(b)) => a == b,
            (PyKey::Int(a), PyKey::Int(b)) => a == b,
            (PyKey::Float(a), PyKey::Float(b)) => a == b,
            (PyKey::Int(i), PyKey::Float(f)) | (PyKey::Float(f), PyKey::Int(i)) => *i as f64 == *f,
            (PyKey::None, PyKey::None) => true,
            _ => false,
        }
    }
}

/// Rule 10's comparisons, in the reference's (`_check_power_levels`)
/// order: the scalar levels, then every key of `users`, `events` and (room
/// v6+) `notifications` in either the old or the new content. `check` gets
/// `(old level, new level, the user ID for a users entry)`; absent is `None`.
///
/// Where the reference's Python raises instead (`list()` of a container
/// that is not iterable or holds unhashable items, before any comparison;
/// `int()` of a value, or indexing a list or string, when its key is
/// reached), this returns `invalid(reason)`. Containers that are not
/// objects only get this far before room v10.
pub fn for_each_level_change<'a, E>(
    old: &'a PowerLevels,
    new: &'a PowerLevels,
    notifications: bool,
    invalid: impl Fn(String) -> E,
    mut check: impl FnMut(Option<i128>, Option<i128>, Option<&str>) -> Result<(), E>,
) -> Result<(), E> {
    let scalar = |l: Option<Level>, key: &str| match l {
        None => Ok(None),
        Some(Level::Int(i)) => Ok(Some(i)),
        Some(_) => Err(invalid(format!("{key} is not an integer"))),
    };
    let mut maps: Vec<(&LevelMap, &LevelMap, bool)> =
        vec![(&old.users, &new.users, true), (&old.events, &new.events, false)];
    if notifications {
        maps.push((&old.notifications, &new.notifications, false));
    }
    // The whole list of levels is built before the first comparison.
    let mut keyed: Vec<(&LevelMap, &LevelMap, bool, Vec<PyKey<'a>>)> = Vec::new();
    for (o, n, users) in maps {
        let mut keys: Vec<PyKey<'a>> = Vec::new();
        // Each key once, in first-seen order. A string key equals only a
        // string key: those are found in a set (a `users` map of thousands
        // of entries took a quadratic scan per power-levels check); the rare
        // other keys (containers that are not objects) by a scan of those.
        let mut strings: std::collections::HashSet<std::borrow::Cow<'a, str>> = std::collections::HashSet::new();
        for k in
            o.py_keys().map_err(|e| invalid(e.into()))?.into_iter().chain(n.py_keys().map_err(|e| invalid(e.into()))?)
        {
            let new = match &k {
                PyKey::Str(s) => strings.insert(s.clone()),
                other => !keys.iter().any(|x| x == other),
            };
            if new {
                keys.push(k);
            }
        }
        keyed.push((o, n, users, keys));
    }
    for (i, key) in SCALAR_KEYS.iter().enumerate() {
        check(scalar(old.scalars[i], key)?, scalar(new.scalars[i], key)?, None)?;
    }
    for (o, n, users, keys) in keyed {
        for k in &keys {
            let level = |m: &LevelMap| -> Result<Option<i128>, E> {
                if let (None, PyKey::Str(key)) = (&m.other, k) {
                    // An object: one lookup for `in` and the level.
                    return match m.entries.get(key) {
                        None => Ok(None),
                        Some(Level::Int(i)) => Ok(Some(*i)),
                        Some(_) => Err(invalid(format!("{k:?}: level is not an integer"))),
                    };
                }
                if m.py_contains(k).map_err(|e| invalid(e.into()))? {
                    m.py_level(k).map(Some).map_err(|e| invalid(format!("{k:?}: {e}")))
                } else {
                    Ok(None)
                }
            };
            let (old_level, new_level) = (level(o)?, level(n)?);
            check(old_level, new_level, if users { k.as_str() } else { None })?;
        }
    }
    Ok(())
}

/// The scalar level keys, in the order the spec lists them.
pub const SCALAR_KEYS: [&str; 7] =
    ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"];

/// Parsed power-levels content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PowerLevels {
    /// `users`: user ID → level.
    pub users: LevelMap,
    /// `events`: event type → level.
    pub events: LevelMap,
    /// `notifications`: key → level.
    pub notifications: LevelMap,
    /// The scalar keys of [`SCALAR_KEYS`], in that order; `None` when absent.
    pub scalars: [Option<Level>; 7],
    /// Every present scalar was a true JSON integer (room v10 rule).
    pub scalars_strict_ints: bool,
}

impl PowerLevels {
    /// Reads power-levels content (any JSON; non-objects read as empty).
    pub fn from_content(content: &Map<String, Value>) -> Self {
        Self::from_content_with(content, &mut Unshared)
    }

    /// [`from_content`](Self::from_content), the map keys and chunks made
    /// by `names` (a room's: the keys are user IDs and event types its events
    /// already name, and every power-levels event repeats most of them).
    pub fn from_content_with(content: &Map<String, Value>, names: &mut dyn LevelInterner) -> Self {
        let mut scalars = [None; 7];
        let mut strict = true;
        for (i, key) in SCALAR_KEYS.iter().enumerate() {
            if let Some(v) = content.get(*key) {
                scalars[i] = Some(Level::from_json(v));
                strict &= Level::is_strict_int(v);
            }
        }
        Self {
            users: LevelMap::from_json(content.get("users"), names),
            events: LevelMap::from_json(content.get("events"), names),
            notifications: LevelMap::from_json(content.get("notifications"), names),
            scalars,
            scalars_strict_ints: strict,
        }
    }

    /// A scalar level as present in the content (`None` if absent).
    pub fn scalar(&self, key: &str) -> Option<Level> {
        SCALAR_KEYS.iter().position(|k| *k == key).and_then(|i| self.scalars[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn level_entries_are_a_sorted_map() {
        let n = Name::new;
        // Out of order, "@b" given twice: sorted, the last "@b" kept.
        let e: LevelEntries =
            [(n("@b"), Level::Int(1)), (n("@a"), Level::Null), (n("@c"), Level::Int(3)), (n("@b"), Level::Int(2))]
                .into_iter()
                .collect();
        assert_eq!(e.keys().map(|k| &**k).collect::<Vec<_>>(), ["@a", "@b", "@c"]);
        assert_eq!(e.get("@b"), Some(&Level::Int(2)));
        assert_eq!(e.get("@a"), Some(&Level::Null));
        assert_eq!(e.get("@d"), None);
        assert!(e.contains_key("@c") && !e.contains_key("@"));
        // Already sorted: as given.
        let sorted: LevelEntries = [(n("a"), Level::Int(1)), (n("b"), Level::Invalid)].into_iter().collect();
        assert_eq!(
            sorted.iter().map(|(k, l)| (&**k, *l)).collect::<Vec<_>>(),
            [("a", Level::Int(1)), ("b", Level::Invalid)]
        );
        assert_eq!(LevelEntries::default().len(), 0);
    }

    #[test]
    fn level_maps_share_their_chunks_through_a_pool() {
        let names: Vec<Name> = (0..3000).map(|i| Name::new(&format!("@u{i:05}:x"))).collect();
        let a: Vec<(Name, Level)> = names.iter().step_by(2).map(|n| (n.clone(), Level::Int(0))).collect();
        let mut pool = LevelChunkPool::default();
        let map_a = LevelEntries::from_sorted(&a, &mut |c| pool.chunk(c));
        assert!(map_a.chunks().len() > 10, "cut into chunks: {}", map_a.chunks().len());
        let distinct = pool.len();
        // One user's level changed: one new chunk, every other one shared.
        let mut b = a.clone();
        b[700].1 = Level::Int(50);
        let map_b = LevelEntries::from_sorted(&b, &mut |c| pool.chunk(c));
        assert_eq!(pool.len(), distinct + 1);
        let shared = map_a.chunks().iter().filter(|c| map_b.chunks().iter().any(|d| Arc::ptr_eq(c, d))).count();
        assert_eq!(shared, map_a.chunks().len() - 1);
        // Lookups across chunk edges: every key, and keys between them.
        for (i, n) in names.iter().enumerate() {
            let want = (i % 2 == 0).then_some(if i == 1400 { Level::Int(50) } else { Level::Int(0) });
            assert_eq!(map_b.get(n).copied(), want, "{n}");
        }
        assert_eq!(map_b.get("@"), None);
        assert_eq!(map_b.get("@z"), None);
        assert_eq!(map_b.iter().count(), 1500);
        assert_ne!(map_a, map_b);
        // The same map again: nothing new pooled, equal.
        let again = LevelEntries::from_sorted(&b, &mut |c| pool.chunk(c));
        assert_eq!(pool.len(), distinct + 1);
        assert_eq!(again, map_b);
        // Unshared, the same entries are an equal map.
        assert_eq!(b.iter().cloned().collect::<LevelEntries>(), map_b);
        // Held as given chunks (as an image reads them back): the same map;
        // chunks out of order or empty are refused.
        let chunks = map_b.chunks().to_vec();
        assert_eq!(LevelEntries::from_chunks(chunks.clone()).unwrap(), map_b);
        let mut swapped = chunks.clone();
        swapped.swap(0, 1);
        assert!(LevelEntries::from_chunks(swapped).is_err());
        let mut twice = chunks.clone();
        twice.insert(1, Arc::clone(&chunks[0]));
        assert!(LevelEntries::from_chunks(twice).is_err());
        assert!(LevelEntries::from_chunks(vec![Arc::from(Vec::new())]).is_err());
        assert_eq!(LevelEntries::from_chunks(Vec::new()).unwrap(), LevelEntries::default());
    }

    #[test]
    fn python_int_semantics() {
        assert_eq!(parse_python_int(" +100 "), Some(100));
        assert_eq!(parse_python_int("-1_000"), Some(-1000));
        assert_eq!(parse_python_int("1__0"), None);
        assert_eq!(parse_python_int("1.5"), None);
        assert_eq!(parse_python_int(""), None);
        assert_eq!(Level::from_json(&json!(true)), Level::Int(1));
        assert_eq!(Level::from_json(&json!(49.9)), Level::Int(49));
        assert_eq!(Level::from_json(&json!([1])), Level::Invalid);
        assert!(!Level::is_strict_int(&json!("50")));
        assert!(!Level::is_strict_int(&json!(true)));
    }

    #[test]
    fn reads_content() {
        let pl =
            PowerLevels::from_content(json!({"users": {"@a:b": "50"}, "ban": 10, "kick": null}).as_object().unwrap());
        assert_eq!(pl.users.get("@a:b"), Some(Level::Int(50)));
        assert!(!pl.users.all_strict_ints);
        assert_eq!(pl.scalar("ban"), Some(Level::Int(10)));
        assert_eq!(pl.scalar("kick"), Some(Level::Null));
        assert_eq!(pl.scalar("redact"), None);
    }

    /// Rule 10's comparisons visit each key once, the old content's keys
    /// first, then the new content's others (a users map of thousands).
    #[test]
    fn level_changes_visit_each_key_once_in_first_seen_order() {
        let visit = |old: Value, new: Value| -> Vec<(Option<i128>, Option<i128>, Option<String>)> {
            let (old, new) = (
                PowerLevels::from_content(old.as_object().unwrap()),
                PowerLevels::from_content(new.as_object().unwrap()),
            );
            let mut seen = Vec::new();
            for_each_level_change(
                &old,
                &new,
                false,
                |e| e,
                |o, n, u| {
                    seen.push((o, n, u.map(str::to_owned)));
                    Ok::<(), String>(())
                },
            )
            .unwrap();
            seen.split_off(SCALAR_KEYS.len())
        };
        let users = |range: std::ops::Range<u32>| -> Value {
            Value::Object(range.map(|i| (format!("@u{i:05}:x"), serde_json::json!(i % 100))).collect())
        };
        let got = visit(serde_json::json!({"users": users(0..3000)}), serde_json::json!({"users": users(1000..4000)}));
        assert_eq!(got.len(), 4000, "each user once");
        let who: Vec<&str> = got.iter().map(|(_, _, u)| u.as_deref().unwrap()).collect();
        let mut want: Vec<String> = (0..4000).map(|i| format!("@u{i:05}:x")).collect();
        want.sort();
        assert_eq!(who, want.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(got[0], (Some(0), None, Some("@u00000:x".into())));
        assert_eq!(got[1500], (Some(0), Some(0), Some("@u01500:x".into())));
    }
}
