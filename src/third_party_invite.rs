//! Third-party invites (spec: room versions, authorization rules, "If
//! membership is invite and content contains a `third_party_invite`
//! property"): an invite vouched for by an identity server, checked against
//! the `m.room.third_party_invite` event its token names.
//!
//! The check follows the reference server's `_verify_third_party_invite`
//! step by step, including where it raises instead of answering: a public
//! key entry without `public_key`, a key that is not valid base64 or not 32
//! bytes, a `signatures` value that is not an object. Those raise Python
//! exceptions that are not authorization failures, so the reference server
//! never stores the event ([`AuthRejection::Unprocessable`]).

use serde_json::{Map, Value};

use crate::auth_rules::AuthRejection;
use crate::canonical_json::object_to_canonical_string;
use crate::event::{Facts, StoredEvent};

type Result<T> = std::result::Result<T, AuthRejection>;

fn unprocessable(what: &str) -> AuthRejection {
    AuthRejection::Unprocessable(format!("third_party_invite: {what}"))
}

/// One entry of the reference's `get_public_keys(invite_event)`.
enum PublicKeyEntry<'a> {
    /// `content.public_key` itself.
    Key(&'a Value),
    /// An element of a `content.public_keys` array: an object with `public_key`.
    Object(&'a Value),
    /// A character of a string, or a key of an object, given as `public_keys`:
    /// indexing it with `"public_key"` raises `TypeError`.
    NotAMapping,
}

/// `get_public_keys`: `content.public_key` (if present), then the entries of
/// `content.public_keys` (Python's `list.extend`: a string gives its
/// characters, an object its keys; anything not iterable raises).
fn public_keys(content: &Map<String, Value>) -> Result<Vec<PublicKeyEntry<'_>>> {
    let mut out = Vec::new();
    if let Some(k) = content.get("public_key") {
        out.push(PublicKeyEntry::Key(k));
    }
    match content.get("public_keys") {
        None => {}
        Some(Value::Array(items)) => out.extend(items.iter().map(PublicKeyEntry::Object)),
        Some(Value::String(s)) => out.extend(s.chars().map(|_| PublicKeyEntry::NotAMapping)),
        Some(Value::Object(m)) => out.extend(m.keys().map(|_| PublicKeyEntry::NotAMapping)),
        Some(_) => return Err(unprocessable("public_keys is not iterable")),
    }
    Ok(out)
}

/// Checks `content.third_party_invite` of an invite `event` (the caller
/// only calls this when the key is present). `invite_event` looks up the
/// `m.room.third_party_invite` event of a token in the auth state.
///
/// 1. `third_party_invite` must be an object with an object `signed` that
///    has `mxid`, `token` and `signatures`; otherwise not invited.
/// 2. The `m.room.third_party_invite` event named by `token` must exist,
///    have the invite's sender, and `mxid` must be the invite's state key.
/// 3. For each public key of that event in turn, the first `ed25519:`
///    signature of `signed` (in the order the reference iterates, servers
///    then key IDs) must verify with it; the first that does allows the
///    invite, a failing one moves on to the next public key.
pub fn verify<'a>(
    event: &StoredEvent,
    third_party_invite: &Value,
    invite_event: impl Fn(&str) -> Option<&'a StoredEvent>,
) -> Result<bool> {
    let Value::Object(tpi) = third_party_invite else {
        return Ok(false);
    };
    let Some(Value::Object(signed)) = tpi.get("signed") else {
        return Ok(false);
    };
    if !["mxid", "token", "signatures"].iter().all(|k| signed.contains_key(*k)) {
        return Ok(false);
    }
    let token = match &signed["token"] {
        Value::String(t) => t.as_str(),
        Value::Array(_) | Value::Object(_) => return Err(unprocessable("token is unhashable")),
        // A number, boolean or null names no state event.
        _ => return Ok(false),
    };
    let Some(invite) = invite_event(token) else {
        return Ok(false);
    };
    if invite.sender != event.sender {
        return Ok(false);
    }
    if signed["mxid"].as_str() != event.state_key.as_deref() {
        return Ok(false);
    }
    let Facts::ThirdPartyInvite(content) = &invite.facts else {
        return Ok(false);
    };
    for entry in public_keys(content)? {
        let public_key = match entry {
            PublicKeyEntry::Key(k) => k,
            PublicKeyEntry::Object(Value::Object(o)) => {
                o.get("public_key").ok_or_else(|| unprocessable("public_keys entry without public_key"))?
            }
            PublicKeyEntry::Object(_) | PublicKeyEntry::NotAMapping => {
                return Err(unprocessable("public_keys entry is not an object"))
            }
        };
        if first_ed25519_signature_verifies(signed, public_key)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The reference's `try` block for one public key: find the first
/// `ed25519:` key ID among `signed.signatures`, decode the public key (a
/// failure raises), and verify that signature. `Ok(false)` when there is
/// none or it does not verify (`SignatureVerifyException` is caught).
fn first_ed25519_signature_verifies(signed: &Map<String, Value>, public_key: &Value) -> Result<bool> {
    let Value::Object(signatures) = &signed["signatures"] else {
        return Err(unprocessable("signatures is not an object"));
    };
    for (server, block) in signatures {
        let Value::Object(block) = block else {
            return Err(unprocessable("a signatures entry is not an object"));
        };
        let Some(key_id) = block.keys().find(|k| k.starts_with("ed25519:")) else {
            continue;
        };
        let Value::String(public_key) = public_key else {
            return Err(unprocessable("public key is not a string"));
        };
        let bytes = python_decode_base64(public_key).map_err(unprocessable)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| unprocessable("public key is not exactly 32 bytes long"))?;
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&bytes) else {
            return Ok(false);
        };
        return Ok(verify_signed_json(signed, server, key_id, &key));
    }
    Ok(false)
}

/// signedjson's `verify_signed_json`: the signature `signatures[server][key_id]`
/// (decoded like [`python_decode_base64`]) over the canonical JSON of the
/// object without `signatures` and `unsigned`. Any failure is `false`.
fn verify_signed_json(
    object: &Map<String, Value>,
    server: &str,
    key_id: &str,
    key: &ed25519_dalek::VerifyingKey,
) -> bool {
    let Some(Value::String(sig)) = object.get("signatures").and_then(|s| s.get(server)).and_then(|s| s.get(key_id))
    else {
        return false;
    };
    let Some(sig) = python_decode_base64(sig).ok().and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok()) else {
        return false;
    };
    let mut copy = object.clone();
    copy.remove("signatures");
    copy.remove("unsigned");
    key.verify_strict(object_to_canonical_string(&copy).as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig)).is_ok()
}

/// `unpaddedbase64.decode_base64` as the reference runs it: the input must
/// be ASCII, is padded to a multiple of four, `-`/`_` read as `+`/`/`, and
/// CPython's non-strict `a2b_base64` skips characters outside the alphabet
/// and stops at a complete padding sequence.
pub fn python_decode_base64(s: &str) -> std::result::Result<Vec<u8>, &'static str> {
    if !s.is_ascii() {
        return Err("public key is not ASCII");
    }
    let pad = 3 - ((s.len() + 3) % 4);
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut quad_pos, mut left, mut pads) = (0u8, 0u8, 0usize);
    for b in s.bytes().chain(std::iter::repeat_n(b'=', pad)) {
        if b == b'=' {
            if quad_pos >= 2 {
                pads += 1;
                if usize::from(quad_pos) + pads >= 4 {
                    return Ok(out);
                }
            }
            continue;
        }
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        pads = 0;
        match quad_pos {
            0 => {
                left = v;
                quad_pos = 1;
            }
            1 => {
                out.push((left << 2) | (v >> 4));
                left = v & 0x0f;
                quad_pos = 2;
            }
            2 => {
                out.push((left << 4) | (v >> 2));
                left = v & 0x03;
                quad_pos = 3;
            }
            _ => {
                out.push((left << 6) | v);
                quad_pos = 0;
            }
        }
    }
    match quad_pos {
        0 => Ok(out),
        1 => Err("invalid base64: the number of data characters is 1 more than a multiple of 4"),
        _ => Err("invalid base64: incorrect padding"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_unpaddedbase64() {
        assert_eq!(python_decode_base64("AAAA"), Ok(vec![0, 0, 0]));
        assert_eq!(python_decode_base64("AAA"), Ok(vec![0, 0]));
        assert_eq!(python_decode_base64("AA"), Ok(vec![0]));
        assert_eq!(python_decode_base64(""), Ok(vec![]));
        assert!(python_decode_base64("abcde").is_err(), "5 data characters");
        assert!(python_decode_base64("é").is_err());
        // Outside the alphabet: skipped.
        assert_eq!(python_decode_base64("A!A!A!A"), Ok(vec![0, 0, 0]));
        // URL-safe and standard alphabets alike.
        assert_eq!(python_decode_base64("-_"), python_decode_base64("+/"));
        // A complete padding sequence ends the input.
        assert_eq!(python_decode_base64("AA==AAAA"), Ok(vec![0]));
    }
}
