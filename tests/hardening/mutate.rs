//! Input generation shared by the cargo-fuzz targets (`fuzz/`) and the
//! PRNG-driven harness of `tests/hardening`: a source of choices (libFuzzer
//! bytes or a seeded PRNG), random JSON, byte-level and structural PDU
//! mutations.
//!
//! Depends only on `serde_json` and `roomdag` so that both crates can
//! include it with `#[path]`.

#![allow(dead_code)]

use serde_json::{json, Map, Value};

/// Where choices come from.
pub trait Source {
    /// The next 64 random bits (a byte source returns zeros once exhausted,
    /// so every loop driven by it ends).
    fn next_u64(&mut self) -> u64;
    /// Whether the source is exhausted (a PRNG never is).
    fn exhausted(&self) -> bool {
        false
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n as u64) as usize
    }
    /// True with probability about `1/n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// A uniformly chosen element.
pub fn pick<'a, T>(src: &mut dyn Source, items: &'a [T]) -> &'a T {
    &items[src.below(items.len())]
}

/// SplitMix64: tiny, fast, good enough for test inputs, and the same on
/// every platform.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

impl Source for Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// libFuzzer's input read as a stream of choices.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
}

impl Source for Bytes<'_> {
    fn next_u64(&mut self) -> u64 {
        // One byte per choice keeps the input/choice mapping local, which
        // is what lets libFuzzer's mutations make small steps; choices with
        // more than 256 outcomes take a second byte.
        let mut v = 0u64;
        for _ in 0..2 {
            let b = self.data.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            v = (v << 8) | b as u64;
        }
        v
    }
    fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }
}

// ---------------------------------------------------------------------------
// Random values

const TYPES: &[&str] = &[
    "m.room.create",
    "m.room.member",
    "m.room.power_levels",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.redaction",
    "m.room.third_party_invite",
    "m.room.message",
    "m.room.topic",
    "m.room.name",
    "m.room.server_acl",
    "m.room.aliases",
    "m.room.guest_access",
    "",
];

const MEMBERSHIPS: &[&str] = &["join", "invite", "leave", "ban", "knock", "JOIN", "", "bogus"];

const JOIN_RULES: &[&str] = &["public", "invite", "knock", "restricted", "knock_restricted", "private", ""];

/// Strings that tend to matter: IDs, empty, non-ASCII, escapes, boundaries.
fn interesting_string(src: &mut dyn Source) -> String {
    match src.below(16) {
        0 => String::new(),
        1 => "@creator:a.example".into(),
        2 => "@mallory:evil.example".into(),
        3 => "@a:b".into(),
        4 => "!6b51d431df5d7f141c:a.example".into(),
        5 => "$notanevent".into(),
        6 => "x".repeat(255),
        7 => "x".repeat(256),
        8 => "é".repeat(200), // 200 code points, 400 bytes
        9 => "\u{0}\u{1f}\"\\\u{2028}\u{fffd}".into(),
        10 => "@".into(),
        11 => ":".into(),
        12 => "a".repeat(70_000), // over the 65,536-byte PDU limit
        13 => "@user:[::1]:8448".into(),
        14 => format!("@u{}:s{}.example", src.below(100), src.below(5)),
        _ => "𝄞\u{10ffff}".into(),
    }
}

/// Integers at the edges the code checks.
fn interesting_number(src: &mut dyn Source) -> Value {
    match src.below(14) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(9_007_199_254_740_991i64), // 2^53 − 1
        3 => json!(9_007_199_254_740_992i64), // 2^53
        4 => json!(-9_007_199_254_740_991i64),
        5 => json!(i64::MAX),
        6 => json!(i64::MIN),
        7 => json!(u64::MAX),
        8 => json!(1.5),
        9 => json!(-0.0),
        10 => json!(1e300),
        11 => json!(100),
        12 => json!(50),
        _ => json!(src.below(1000) as i64 - 500),
    }
}

/// A random JSON value of bounded size; `depth` is the nesting budget.
pub fn random_value(src: &mut dyn Source, depth: usize) -> Value {
    match src.below(if depth == 0 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(src.one_in(2)),
        2 => interesting_number(src),
        3 => Value::String(interesting_string(src)),
        4 => json!(src.below(200)),
        5 => {
            let n = src.below(4);
            Value::Array((0..n).map(|_| random_value(src, depth - 1)).collect())
        }
        _ => {
            let n = src.below(5);
            let mut m = Map::new();
            for _ in 0..n {
                let k = if src.one_in(2) { interesting_string(src) } else { format!("k{}", src.below(8)) };
                m.insert(k, random_value(src, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// `[[[…]]]` or `{"a":{"a":…}}` nested `n` deep, as text (serde_json refuses
/// more than 128 levels; this builds the text without recursing).
pub fn nested_text(n: usize, objects: bool, inner: &str) -> String {
    let (open, close) = if objects { ("{\"a\":", "}") } else { ("[", "]") };
    let mut s = String::with_capacity(n * 6 + inner.len());
    for _ in 0..n {
        s.push_str(open);
    }
    s.push_str(inner);
    for _ in 0..n {
        s.push_str(close);
    }
    s
}

/// A nested value `n` deep, built iteratively. Values nested deeper than a
/// few thousand levels must be dropped with [`drop_deep`] (serde_json's
/// `Drop` recurses).
pub fn nested_value(n: usize) -> Value {
    let mut v = json!(1);
    for i in 0..n {
        v = if i % 2 == 0 { Value::Array(vec![v]) } else { Value::Object(Map::from_iter([("a".to_string(), v)])) };
    }
    v
}

/// Drops a deeply nested value without recursion.
pub fn drop_deep(v: Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a),
            Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Byte-level mutation (for the parser targets)

/// Flips, inserts, deletes or duplicates bytes of a text (the result may
/// not be UTF-8; the parser targets skip such inputs).
pub fn mutate_bytes(src: &mut dyn Source, text: &[u8]) -> Vec<u8> {
    let mut b = text.to_vec();
    let rounds = 1 + src.below(4);
    for _ in 0..rounds {
        if b.is_empty() {
            b.push(b'{');
        }
        let i = src.below(b.len());
        match src.below(8) {
            0 => b[i] ^= 1 << src.below(8),
            1 => {
                b.remove(i);
            }
            2 => b.insert(i, *pick(src, b"{}[]\",:0123456789-+.eE\\ntrufalse \x00\xff")),
            3 => b.truncate(i),
            4 => {
                // Duplicate a slice.
                let j = i + src.below((b.len() - i).min(64) + 1);
                let chunk = b[i..j].to_vec();
                let at = src.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
            5 => {
                let s = interesting_string(src);
                let at = src.below(b.len() + 1);
                b.splice(at..at, s.into_bytes());
            }
            6 => {
                let n = nested_text(src.below(300), src.one_in(2), "0");
                let at = src.below(b.len() + 1);
                b.splice(at..at, n.into_bytes());
            }
            _ => {
                let n = if src.one_in(2) { interesting_number(src).to_string() } else { number_text(src).to_string() };
                let at = src.below(b.len() + 1);
                b.splice(at..at, n.into_bytes());
            }
        }
    }
    b
}

/// Number spellings that parse (serde_json keeps the text with
/// `arbitrary_precision`) but sit at the edges of canonical JSON.
pub const NUMBER_TEXTS: &[&str] = &[
    "-0",
    "-0.0",
    "0.0",
    "1E2",
    "1e+2",
    "1.0",
    "1.50",
    "0.1e-7",
    "1e400",
    "-1e400",
    "1e-400",
    "9007199254740991",
    "9007199254740992",
    "-9007199254740992",
    "18446744073709551616",
    "123456789012345678901234567890",
    "-123456789012345678901234567890",
    "17000011892233720368547758070036",
    "4.35",
    "2.5e-7",
    "1e16",
    "1e15",
    "123456789.123456789",
];

/// One of [`NUMBER_TEXTS`].
pub fn number_text(src: &mut dyn Source) -> &'static str {
    *pick(src, NUMBER_TEXTS)
}

// ---------------------------------------------------------------------------
// Structural PDU mutation (for the ingest target)

/// What a mutation can point references at.
pub struct Known<'a> {
    /// IDs of events the room has seen (stored or not).
    pub ids: &'a [String],
}

fn id_list(src: &mut dyn Source, known: &Known<'_>, max: usize) -> Value {
    let n = src.below(max + 1);
    Value::Array(
        (0..n)
            .map(|_| {
                if !known.ids.is_empty() && !src.one_in(6) {
                    json!(known.ids[known.ids.len() - 1 - src.below(known.ids.len().min(64))])
                } else if src.one_in(2) {
                    json!(format!("$unknown{}", src.below(1000)))
                } else {
                    random_value(src, 1)
                }
            })
            .collect(),
    )
}

fn pick_key(src: &mut dyn Source, m: &Map<String, Value>) -> Option<String> {
    if m.is_empty() {
        None
    } else {
        m.keys().nth(src.below(m.len())).cloned()
    }
}

/// Applies one structural mutation to a PDU object.
pub fn mutate_pdu(src: &mut dyn Source, ev: &mut Map<String, Value>, known: &Known<'_>) {
    match src.below(22) {
        // Flip the type (to another type or another JSON type).
        0 => {
            let t = if src.one_in(4) { random_value(src, 1) } else { json!(pick(src, TYPES)) };
            ev.insert("type".into(), t);
        }
        // Delete a top-level key.
        1 => {
            if let Some(k) = pick_key(src, ev) {
                ev.remove(&k);
            }
        }
        // Delete or replace a content key.
        2 => {
            if let Some(Value::Object(c)) = ev.get_mut("content") {
                if let Some(k) = pick_key(src, c) {
                    if src.one_in(2) {
                        c.remove(&k);
                    } else {
                        c.insert(k, random_value(src, 2));
                    }
                }
            }
        }
        // Swap prev and auth.
        3 => {
            let p = ev.remove("prev_events").unwrap_or(Value::Null);
            let a = ev.remove("auth_events").unwrap_or(Value::Null);
            ev.insert("prev_events".into(), a);
            ev.insert("auth_events".into(), p);
        }
        // New prev_events (up to 25: over the cap of 20).
        4 => {
            let max = if src.one_in(4) { 25 } else { 4 };
            ev.insert("prev_events".into(), id_list(src, known, max));
        }
        // New auth_events (up to 12: over the cap of 10).
        5 => {
            let max = if src.one_in(4) { 12 } else { 5 };
            ev.insert("auth_events".into(), id_list(src, known, max));
        }
        // Depth and timestamp extremes.
        6 => {
            let k = if src.one_in(2) { "depth" } else { "origin_server_ts" };
            ev.insert(k.into(), interesting_number(src));
        }
        // Long or odd strings in ID fields.
        7 => {
            let k = *pick(src, &["sender", "state_key", "room_id", "type"]);
            ev.insert(k.into(), json!(interesting_string(src)));
        }
        // Long content body.
        8 => {
            let n = *pick(src, &[10usize, 1000, 30_000, 66_000]);
            if let Some(Value::Object(c)) = ev.get_mut("content") {
                c.insert("body".into(), json!("b".repeat(n)));
            }
        }
        // Deep nesting in content (serialised deeper than 128 levels, the
        // PDU no longer parses; below that it reaches the canonical writer).
        9 => {
            let n = *pick(src, &[5usize, 60, 126, 127, 130, 200]);
            if let Some(Value::Object(c)) = ev.get_mut("content") {
                c.insert("nested".into(), nested_value(n));
            }
        }
        // Another room.
        10 => {
            let r = if src.one_in(2) { "!other:b.example".to_string() } else { interesting_string(src) };
            ev.insert("room_id".into(), json!(r));
        }
        // Another sender.
        11 => {
            let s = *pick(
                src,
                &[
                    "@creator:a.example",
                    "@carol:a.example",
                    "@xena:b.example",
                    "@dave:c.example",
                    "@mallory:evil.example",
                    "not-a-user",
                ],
            );
            ev.insert("sender".into(), json!(s));
        }
        // Membership content.
        12 => {
            ev.insert("type".into(), json!("m.room.member"));
            if !ev.contains_key("state_key") || src.one_in(3) {
                let sk = ev.get("sender").cloned().unwrap_or(json!("@x:y"));
                ev.insert("state_key".into(), sk);
            }
            let mut c = Map::new();
            c.insert(
                "membership".into(),
                if src.one_in(5) { random_value(src, 1) } else { json!(pick(src, MEMBERSHIPS)) },
            );
            if src.one_in(3) {
                c.insert("join_authorised_via_users_server".into(), json!(interesting_string(src)));
            }
            if src.one_in(4) {
                c.insert(
                    "third_party_invite".into(),
                    json!({"display_name": "x", "signed": {"mxid": "@x:y", "token": "t", "signatures": {"s": {"ed25519:0": "AAAA"}}}}),
                );
            }
            ev.insert("content".into(), Value::Object(c));
        }
        // Power levels content.
        13 => {
            ev.insert("type".into(), json!("m.room.power_levels"));
            ev.insert("state_key".into(), json!(""));
            let mut c = Map::new();
            for k in ["ban", "kick", "redact", "invite", "state_default", "events_default", "users_default"] {
                if src.one_in(2) {
                    let v = match src.below(4) {
                        0 => json!("50"),
                        1 => json!(" +7 "),
                        _ => interesting_number(src),
                    };
                    c.insert(k.into(), v);
                }
            }
            let mut users = Map::new();
            for _ in 0..src.below(4) {
                users.insert(interesting_string(src), interesting_number(src));
            }
            users.insert("@creator:a.example".into(), json!(100));
            c.insert("users".into(), Value::Object(users));
            if src.one_in(2) {
                c.insert("events".into(), json!({"m.room.power_levels": interesting_number(src), "m.room.name": "x"}));
            }
            ev.insert("content".into(), Value::Object(c));
        }
        // Join rules content.
        14 => {
            ev.insert("type".into(), json!("m.room.join_rules"));
            ev.insert("state_key".into(), json!(""));
            let mut c = Map::new();
            c.insert("join_rule".into(), json!(pick(src, JOIN_RULES)));
            if src.one_in(2) {
                c.insert(
                    "allow".into(),
                    json!([{"type": "m.room_membership", "room_id": "!x:y"}, random_value(src, 1)]),
                );
            }
            ev.insert("content".into(), Value::Object(c));
        }
        // A redaction of a known (or unknown) event.
        15 => {
            ev.insert("type".into(), json!("m.room.redaction"));
            ev.remove("state_key");
            let target = if !known.ids.is_empty() && !src.one_in(5) {
                json!(known.ids[src.below(known.ids.len())])
            } else {
                random_value(src, 1)
            };
            let mut c = Map::new();
            c.insert("redacts".into(), target.clone());
            ev.insert("content".into(), Value::Object(c));
            if src.one_in(2) {
                ev.insert("redacts".into(), target);
            }
        }
        // Duplicates inside prev/auth lists.
        16 => {
            for k in ["prev_events", "auth_events"] {
                if let Some(Value::Array(a)) = ev.get_mut(k) {
                    if let Some(first) = a.first().cloned() {
                        for _ in 0..1 + src.below(3) {
                            a.push(first.clone());
                        }
                    }
                }
            }
        }
        // `unsigned` with stripped state and junk.
        17 => {
            let v = match src.below(3) {
                0 => json!({"age": 5, "invite_room_state": "nope"}),
                1 => json!({"invite_room_state": [{"type": "m.room.name"}], "knock_room_state": []}),
                _ => random_value(src, 2),
            };
            ev.insert("unsigned".into(), v);
        }
        // Garbage hashes and signatures.
        18 => {
            let k = if src.one_in(2) { "hashes" } else { "signatures" };
            let v = match src.below(4) {
                0 => json!({"sha256": "!!!"}),
                1 => json!({"sha256": "AAAA"}),
                2 => json!({"a.example": {"ed25519:1": 5}}),
                _ => random_value(src, 2),
            };
            ev.insert(k.into(), v);
        }
        // State key on / off.
        19 => {
            if ev.remove("state_key").is_none() {
                ev.insert("state_key".into(), json!(interesting_string(src)));
            }
        }
        // A random extra top-level key (event_id is refused in v3+).
        20 => {
            let k = *pick(src, &["event_id", "redacts", "origin", "membership", "prev_state", "extra"]);
            ev.insert(k.into(), random_value(src, 1));
        }
        // Create-event oddities.
        _ => {
            ev.insert("type".into(), json!("m.room.create"));
            ev.insert("state_key".into(), json!(""));
            let v = *pick(src, &["11", "12", "1", "99", ""]);
            let mut c = Map::new();
            c.insert("room_version".into(), json!(v));
            if src.one_in(2) {
                c.insert("m.federate".into(), json!(src.one_in(2)));
            }
            if src.one_in(3) {
                c.insert("additional_creators".into(), random_value(src, 1));
            }
            ev.insert("content".into(), Value::Object(c));
        }
    }
}
