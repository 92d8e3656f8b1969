//! `m.room.power_levels` content, read the way the reference server reads it.
//!
//! Power levels were loosely typed before room version 10: a level may be a
//! JSON integer, a numeric string (`" +10 "`), a float or a boolean, and the
//! reference server converts them with Python's `int()`. [`Level`] keeps the
//! converted value, or records why it cannot be converted; using such a
//! level rejects the event being authorised.

use serde_json::{Map, Value};

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

/// The entries of a level map, sorted by key: a flat slice rather than a
/// tree (a 100,000-member room's power levels hold a user map of that size
/// in every `m.room.power_levels` event the room keeps).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelEntries(Box<[(Name, Level)]>);

impl LevelEntries {
    /// The level of `key`.
    pub fn get(&self, key: &str) -> Option<&Level> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok().map(|i| &self.0[i].1)
    }

    /// Whether `key` has an entry.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Name> {
        self.0.iter().map(|(k, _)| k)
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Name, &Level)> {
        self.0.iter().map(|(k, l)| (k, l))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Built like a map: sorted by key, a repeated key keeps its last level.
impl FromIterator<(Name, Level)> for LevelEntries {
    fn from_iter<I: IntoIterator<Item = (Name, Level)>>(iter: I) -> Self {
        let mut v: Vec<(Name, Level)> = iter.into_iter().collect();
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
        Self(v.into_boxed_slice())
    }
}

impl<'a> IntoIterator for &'a LevelEntries {
    type Item = (&'a Name, &'a Level);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (Name, Level)>, fn(&'a (Name, Level)) -> (&'a Name, &'a Level)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, l)| (k, l))
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
    fn from_json(v: Option<&Value>, name: &mut dyn FnMut(&str) -> Name) -> Self {
        match v {
            None => Self { all_strict_ints: true, ..Self::default() },
            Some(Value::Object(m)) => Self {
                entries: m.iter().map(|(k, v)| (name(k), Level::from_json(v))).collect(),
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
        for k in
            o.py_keys().map_err(|e| invalid(e.into()))?.into_iter().chain(n.py_keys().map_err(|e| invalid(e.into()))?)
        {
            if !keys.contains(&k) {
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
        Self::from_content_with(content, &mut Name::new)
    }

    /// [`from_content`](Self::from_content), the map keys made by `name`
    /// (a room's interner: the keys are user IDs and event types its events
    /// already name, and every power-levels event repeats them).
    pub fn from_content_with(content: &Map<String, Value>, name: &mut dyn FnMut(&str) -> Name) -> Self {
        let mut scalars = [None; 7];
        let mut strict = true;
        for (i, key) in SCALAR_KEYS.iter().enumerate() {
            if let Some(v) = content.get(*key) {
                scalars[i] = Some(Level::from_json(v));
                strict &= Level::is_strict_int(v);
            }
        }
        Self {
            users: LevelMap::from_json(content.get("users"), name),
            events: LevelMap::from_json(content.get("events"), name),
            notifications: LevelMap::from_json(content.get("notifications"), name),
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
}
