//! `m.room.power_levels` content, read the way the reference server reads it.
//!
//! Power levels were loosely typed before room version 10: a level may be a
//! JSON integer, a numeric string (`" +10 "`), a float or a boolean, and the
//! reference server converts them with Python's `int()`. [`Level`] keeps the
//! converted value, or records why it cannot be converted; using such a
//! level rejects the event being authorised.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

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

/// A map of levels (`users`, `events`, `notifications`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelMap {
    /// The entries; absent when the key itself is absent.
    pub entries: BTreeMap<String, Level>,
    /// Every value was a true JSON integer.
    pub all_strict_ints: bool,
    /// The key was present but not a JSON object.
    pub not_an_object: bool,
}

impl LevelMap {
    fn from_json(v: Option<&Value>) -> Self {
        match v {
            None => Self { all_strict_ints: true, ..Self::default() },
            Some(Value::Object(m)) => Self {
                entries: m.iter().map(|(k, v)| (k.clone(), Level::from_json(v))).collect(),
                all_strict_ints: m.values().all(Level::is_strict_int),
                not_an_object: false,
            },
            Some(_) => Self { not_an_object: true, all_strict_ints: false, ..Self::default() },
        }
    }

    /// `map.get(key)`, with `null` read as absent.
    pub fn get(&self, key: &str) -> Option<Level> {
        self.entries.get(key).copied().filter(|l| *l != Level::Null)
    }
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
        let mut scalars = [None; 7];
        let mut strict = true;
        for (i, key) in SCALAR_KEYS.iter().enumerate() {
            if let Some(v) = content.get(*key) {
                scalars[i] = Some(Level::from_json(v));
                strict &= Level::is_strict_int(v);
            }
        }
        Self {
            users: LevelMap::from_json(content.get("users")),
            events: LevelMap::from_json(content.get("events")),
            notifications: LevelMap::from_json(content.get("notifications")),
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
