//! Canonical JSON (spec appendix "Canonical JSON").
//!
//! > the JSON is encoded in UTF-8 with no insignificant whitespace, object
//! > keys sorted lexicographically by code point, and integers in
//! > \[−(2^53)+1, (2^53)−1\]; floats and exponents are not allowed (v6+).
//!
//! We serialize [`serde_json::Value`] ourselves instead of trusting
//! `serde_json::to_string`: the map type of `Value` depends on a crate feature
//! (`preserve_order`) that any dependency may switch on, and floats must be
//! written the way the reference implementation (Python's `canonicaljson`)
//! writes them in lenient room versions.

use serde_json::{Map, Value};

/// The largest integer canonical JSON allows: 2^53 − 1.
pub const MAX_SAFE_INT: i64 = (1 << 53) - 1;

/// Why a value is not strict canonical JSON.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalJsonError {
    /// An integer outside ±(2^53−1).
    #[error("JSON integer out of range")]
    IntegerOutOfRange,
    /// A float, or an integer written with a fraction or exponent.
    #[error("JSON float values are not allowed")]
    Float,
    /// A number too large for any float (`1e400`).
    #[error("JSON number out of range")]
    NotFinite,
}

/// A JSON number as written: an integer literal (`-?digits`, any size) or
/// anything else (a fraction or an exponent: a float for Python).
///
/// serde_json runs with `arbitrary_precision`, so a number keeps its text:
/// `-0` (the integer zero) stays distinct from `-0.0` (a float), and
/// integers beyond 64 bits stay exact, as in the reference implementation.
fn integer_literal(n: &serde_json::Number) -> Option<&str> {
    let text = n.as_str();
    let digits = text.strip_prefix('-').unwrap_or(text);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

/// Whether a number is an integer within ±(2^53−1).
fn in_safe_range(literal: &str) -> bool {
    literal.parse::<i64>().is_ok_and(|i| (-MAX_SAFE_INT..=MAX_SAFE_INT).contains(&i))
}

/// Checks that every number is finite (`1e400` parses as text but has no
/// JSON value; the reference implementation cannot hash it). Applies to
/// every room version.
pub fn validate_finite(value: &Value) -> Result<(), CanonicalJsonError> {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Number(n) => {
                if integer_literal(n).is_none() && !n.as_f64().is_some_and(f64::is_finite) {
                    return Err(CanonicalJsonError::NotFinite);
                }
            }
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(o) => stack.extend(o.values()),
            Value::Null | Value::Bool(_) | Value::String(_) => {}
        }
    }
    Ok(())
}

/// Checks the strict canonical JSON value rules of room versions 6+.
///
/// The walk uses an explicit stack (nesting depth is attacker-controlled);
/// `serde_json` already caps parse depth at 128.
pub fn validate_strict(value: &Value) -> Result<(), CanonicalJsonError> {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Number(n) => match integer_literal(n) {
                Some(lit) if in_safe_range(lit) => {}
                Some(_) => return Err(CanonicalJsonError::IntegerOutOfRange),
                None => return Err(CanonicalJsonError::Float),
            },
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(o) => stack.extend(o.values()),
            Value::Null | Value::Bool(_) | Value::String(_) => {}
        }
    }
    Ok(())
}

/// Encodes a value as canonical JSON.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value);
    out
}

/// Encodes a JSON object as canonical JSON.
pub fn object_to_canonical_string(map: &Map<String, Value>) -> String {
    object_to_canonical_string_except(map, &[])
}

/// Encodes a JSON object without some of its top-level keys as canonical
/// JSON (what the content hash and the signing bytes cover), without
/// copying the object.
pub fn object_to_canonical_string_except(map: &Map<String, Value>, except: &[&str]) -> String {
    let mut out = String::with_capacity(256);
    write_frames(&mut out, Frame::Object(map, except));
    out
}

/// The length of the canonical JSON of `map`, given `without`, the length
/// of [`object_to_canonical_string_except`]`(map, except)`: that of each
/// left-out member (`"key":value`) and of its comma is added.
pub fn canonical_len_from_part(map: &Map<String, Value>, except: &[&str], without: usize) -> usize {
    let mut len = without;
    let mut members = map.keys().filter(|k| !except.contains(&k.as_str())).count();
    let mut member = String::new();
    for (k, v) in map.iter().filter(|(k, _)| except.contains(&k.as_str())) {
        member.clear();
        write_string(&mut member, k);
        member.push(':');
        write_value(&mut member, v);
        len += member.len() + usize::from(members > 0);
        members += 1;
    }
    len
}

/// An explicit-stack writer: a frame is either a value still to write or a
/// literal separator.
enum Frame<'a> {
    Value(&'a Value),
    /// An object, less the listed keys.
    Object(&'a Map<String, Value>, &'a [&'a str]),
    Raw(&'static str),
    Key(&'a str),
}

pub(crate) fn write_value(out: &mut String, root: &Value) {
    write_frames(out, Frame::Value(root));
}

fn write_frames<'a>(out: &mut String, root: Frame<'a>) {
    let mut stack: Vec<Frame<'a>> = vec![root];
    while let Some(frame) = stack.pop() {
        match frame {
            Frame::Raw(s) => out.push_str(s),
            Frame::Key(k) => {
                write_string(out, k);
                out.push(':');
            }
            Frame::Value(v) => match v {
                Value::Null => out.push_str("null"),
                Value::Bool(true) => out.push_str("true"),
                Value::Bool(false) => out.push_str("false"),
                Value::Number(n) => write_number(out, n),
                Value::String(s) => write_string(out, s),
                Value::Array(items) => {
                    out.push('[');
                    stack.push(Frame::Raw("]"));
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push(Frame::Value(item));
                        if i > 0 {
                            stack.push(Frame::Raw(","));
                        }
                    }
                }
                Value::Object(map) => stack.push(Frame::Object(map, &[])),
            },
            Frame::Object(map, except) => {
                out.push('{');
                stack.push(Frame::Raw("}"));
                let mut entries: Vec<(&String, &Value)> =
                    map.iter().filter(|(k, _)| !except.contains(&k.as_str())).collect();
                // Code-point order equals UTF-8 byte order (a map without
                // `preserve_order` iterates in it already).
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (i, (k, v)) in entries.iter().enumerate().rev() {
                    stack.push(Frame::Value(v));
                    stack.push(Frame::Key(k));
                    if i > 0 {
                        stack.push(Frame::Raw(","));
                    }
                }
            }
        }
    }
}

/// Writes a JSON string the way Python's `json` module does with
/// `ensure_ascii=False`: `"` `\` and control characters escaped (`\b \f \n \r
/// \t` in short form, the rest as `\u00xx`), everything else verbatim.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    // Every byte to escape is ASCII, and no byte of a multi-byte UTF-8
    // character is: scanning bytes finds them, and cuts at char boundaries.
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(DIGITS[usize::from(b >> 4)] as char);
                out.push(DIGITS[usize::from(b & 15)] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Integers are written exactly (`-0` as `0`, any size, like Python's
/// `int`); other numbers as Python writes floats.
fn write_number(out: &mut String, n: &serde_json::Number) {
    match integer_literal(n) {
        Some(lit) => {
            let negative = lit.starts_with('-');
            let digits = lit.trim_start_matches('-').trim_start_matches('0');
            if digits.is_empty() {
                out.push('0');
            } else {
                if negative {
                    out.push('-');
                }
                out.push_str(digits);
            }
        }
        None => match n.as_f64().filter(|f| f.is_finite()) {
            Some(f) => out.push_str(&python_float_repr(f)),
            // Beyond the f64 range (`1e400`): no canonical form exists, and
            // PDUs carrying one are refused (`validate_finite`); keep the
            // literal so the output is at least JSON.
            None => out.push_str(&n.to_string()),
        },
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, positional for
/// exponents in \[−4, 16), scientific (`1e+16`, `1e-05`) otherwise. Only lenient
/// room versions (v1–v5) can carry floats.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e6", "-5e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("exponent is an integer");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = exp as usize + 1;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(s: &str) -> String {
        to_canonical_string(&serde_json::from_str::<Value>(s).unwrap())
    }

    #[test]
    fn length_from_a_part_equals_the_whole() {
        let except = ["unsigned", "signatures", "hashes"];
        for v in [
            json!({}),
            json!({"unsigned": 1}),
            json!({"hashes": {"sha256": "x"}, "signatures": {"a": {"ed25519:1": "s\"ig\u{0001}"}}}),
            json!({"type": "m.room.message", "content": {"body": "é\n✓"}, "depth": 12}),
            json!({"a": [1, {"b": null}], "unsigned": {"age": 5, "k": "\\"}, "z": true, "hashes": {}}),
        ] {
            let map = v.as_object().expect("an object");
            let part = object_to_canonical_string_except(map, &except);
            assert_eq!(canonical_len_from_part(map, &except, part.len()), object_to_canonical_string(map).len(), "{v}");
        }
    }

    #[test]
    fn spec_examples() {
        assert_eq!(canon("{}"), "{}");
        assert_eq!(canon(r#"{"one": 1, "two": "Two"}"#), r#"{"one":1,"two":"Two"}"#);
        assert_eq!(canon(r#"{"b": "2", "a": "1"}"#), r#"{"a":"1","b":"2"}"#);
        assert_eq!(
            canon(
                r#"{"auth":{"success":true,"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"medium":"email","address":"john.doe@example.org"},{"medium":"msisdn","address":"123456789"}]}}}"#
            ),
            r#"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#
        );
        assert_eq!(canon(r#"{"a": "日本語"}"#), r#"{"a":"日本語"}"#);
        assert_eq!(canon(r#"{"本": 2, "日": 1}"#), r#"{"日":1,"本":2}"#);
        assert_eq!(canon(r#"{"a": "\u65E5"}"#), r#"{"a":"日"}"#);
        assert_eq!(canon(r#"{"a": null}"#), r#"{"a":null}"#);
        assert_eq!(canon(r#"{"a": -0}"#), r#"{"a":0}"#);
    }

    #[test]
    fn escapes_like_python() {
        let v = json!({"k": "a\"b\\c\u{1}\u{8}\u{c}\n\r\t\u{1f}/\u{7f}\u{2028}"});
        assert_eq!(to_canonical_string(&v), "{\"k\":\"a\\\"b\\\\c\\u0001\\b\\f\\n\\r\\t\\u001f/\u{7f}\u{2028}\"}");
    }

    #[test]
    fn strict_rules() {
        assert!(validate_strict(&json!({"a": MAX_SAFE_INT, "b": -MAX_SAFE_INT})).is_ok());
        assert_eq!(validate_strict(&json!({"a": MAX_SAFE_INT + 1})), Err(CanonicalJsonError::IntegerOutOfRange));
        assert_eq!(validate_strict(&json!([1.5])), Err(CanonicalJsonError::Float));
        assert_eq!(validate_strict(&json!({"x": u64::MAX})), Err(CanonicalJsonError::IntegerOutOfRange));
        let v: Value = serde_json::from_str("1e10").unwrap();
        assert_eq!(validate_strict(&v), Err(CanonicalJsonError::Float));
    }

    #[test]
    fn floats_like_python_repr() {
        assert_eq!(python_float_repr(1e10), "10000000000.0");
        assert_eq!(python_float_repr(1e16), "1e+16");
        assert_eq!(python_float_repr(1.5), "1.5");
        assert_eq!(python_float_repr(0.0001), "0.0001");
        assert_eq!(python_float_repr(0.00001), "1e-05");
        assert_eq!(python_float_repr(-2.5e-7), "-2.5e-07");
        assert_eq!(python_float_repr(123.456), "123.456");
        assert_eq!(python_float_repr(1.2345678901234567e20), "1.2345678901234567e+20");
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let mut v = json!(1);
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        let s = to_canonical_string(&v);
        assert_eq!(s.len(), 200_001);
        assert!(validate_strict(&v).is_ok());
        // Dropping a deeply nested Value recurses inside serde_json; unwind it by hand.
        let mut cur = v;
        while let Value::Array(mut a) = cur {
            cur = a.pop().unwrap_or(Value::Null);
        }
    }
}
