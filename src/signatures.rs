//! Receipt check 2, "Checks performed on receipt of a PDU": the PDU must be
//! signed by the servers the room version requires (the sender's server,
//! except for third-party invites; for restricted joins, the authorising
//! server too), with keys valid at its `origin_server_ts` where the room
//! version enforces key validity. Checked one by one or in ed25519 batches.

use serde_json::{Map, Value};

mod ed25519_batch;

use crate::ids::domain_of;
use crate::pdu::{parse_pdu, ParsedPdu};
use crate::room_version::RoomVersionRules;
use crate::signing::{decode_base64, KeyStore};

/// The servers whose signatures a PDU needs.
pub struct Signers {
    /// The sender's server.
    pub sender_domain: String,
    /// A third-party invite (`m.room.member` invite with `third_party_invite`):
    /// the sender's server need not sign.
    pub is_3pid_invite: bool,
    /// For restricted joins (v8+): the server of `join_authorised_via_users_server`.
    pub authoriser_domain: Option<String>,
}

impl Signers {
    /// The sender's server (except for third-party invites), and for
    /// restricted joins (v8+) the server of `join_authorised_via_users_server`.
    pub fn of(pdu: &ParsedPdu, rules: &RoomVersionRules) -> Result<Self, &'static str> {
        Self::of_fields(&pdu.sender, &pdu.event_type, pdu.json.get("content").and_then(Value::as_object), rules)
    }

    /// [`of`](Self::of), from a PDU's `sender`, `type` and `content`.
    fn of_fields(
        sender: &str,
        event_type: &str,
        content: Option<&Map<String, Value>>,
        rules: &RoomVersionRules,
    ) -> Result<Self, &'static str> {
        let sender_domain = domain_of(sender).ok_or("sender is not a user ID")?.to_owned();
        let membership = content.and_then(|c| c.get("membership")).and_then(Value::as_str);
        let is_member = event_type == "m.room.member";
        let is_3pid_invite =
            is_member && membership == Some("invite") && content.is_some_and(|c| c.contains_key("third_party_invite"));
        let authoriser_domain = (rules.restricted_join_rule && is_member && membership == Some("join"))
            .then(|| content.and_then(|c| c.get("join_authorised_via_users_server")))
            .flatten()
            .map(|v| {
                let s = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
                s.split_once(':').map_or(s.clone(), |(_, d)| d.to_owned())
            });
        Ok(Self { sender_domain, is_3pid_invite, authoriser_domain })
    }

    /// The servers that must sign, in the order they are checked.
    pub fn servers(&self) -> Vec<&str> {
        let mut servers: Vec<&str> = Vec::new();
        if !self.is_3pid_invite {
            servers.push(&self.sender_domain);
        }
        if let Some(d) = &self.authoriser_domain {
            servers.push(d);
        }
        servers
    }

    /// Checks the required signatures with `keys`.
    pub fn verify(&self, pdu: &ParsedPdu, rules: &RoomVersionRules, keys: &dyn KeyStore) -> Result<(), String> {
        check_signatures(&pdu.json, &self.servers(), pdu.signing_bytes.as_bytes(), pdu.origin_server_ts, rules, keys)
    }

    /// The signatures to check (key, signature) — or why the PDU fails
    /// without checking any (a missing server, no known key, a malformed
    /// signature). Mirrors [`check_signatures`].
    fn jobs(
        &self,
        pdu: &ParsedPdu,
        rules: &RoomVersionRules,
        keys: &dyn KeyStore,
    ) -> Result<Vec<(ed25519_dalek::VerifyingKey, ed25519_dalek::Signature)>, String> {
        let mut jobs = Vec::new();
        for server in self.servers() {
            let Some(sigs) = pdu.json.get("signatures").and_then(|s| s.get(server)).and_then(Value::as_object) else {
                return Err(format!("not signed by {server}"));
            };
            let mut known = false;
            for (key_id, sig) in sigs {
                let Some(key) = keys.verify_key(server, key_id) else { continue };
                if rules.enforce_key_validity && key.valid_until_ts.is_some_and(|v| v < pdu.origin_server_ts) {
                    continue;
                }
                let bytes = sig.as_str().and_then(decode_base64).and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok());
                let Some(bytes) = bytes else {
                    return Err(format!("invalid signature for {server} with {key_id}"));
                };
                jobs.push((key.key, ed25519_dalek::Signature::from_bytes(&bytes)));
                known = true;
            }
            if !known {
                let ids: Vec<&String> = sigs.keys().collect();
                return Err(format!("no known key for {server} among {ids:?}"));
            }
        }
        Ok(jobs)
    }
}

/// The servers whose signatures a PDU needs (spec: "Validating hashes and
/// signatures on received events"): the sender's server (except for a
/// third-party invite), and for a restricted join (v8+) the server of
/// `join_authorised_via_users_server`. These, and only these, are the
/// servers whose keys a receiver fetches for the PDU.
pub fn required_signers(pdu: &ParsedPdu, rules: &RoomVersionRules) -> Result<Vec<String>, &'static str> {
    Signers::of(pdu, rules).map(|s| s.servers().into_iter().map(str::to_owned).collect())
}

/// The [`required_signers`] of a PDU whose keys `keys` lacks: a signer
/// that signed with no key `keys` knows (or, where the room version
/// enforces key validity, none valid at the PDU's `origin_server_ts`). A
/// signer that did not sign at all is not listed: no key would help.
pub fn signers_missing_keys(
    pdu: &ParsedPdu,
    rules: &RoomVersionRules,
    keys: &dyn KeyStore,
) -> Result<Vec<String>, &'static str> {
    let signers = Signers::of(pdu, rules)?;
    Ok(signers.missing_keys(pdu.json.get("signatures"), pdu.origin_server_ts, rules, keys).map(str::to_owned).collect())
}

impl Signers {
    /// The signers that signed (in `signatures`) with no key `keys` knows
    /// valid at `origin_server_ts` (see [`signers_missing_keys`]).
    fn missing_keys<'s>(
        &'s self,
        signatures: Option<&'s Value>,
        origin_server_ts: i64,
        rules: &'s RoomVersionRules,
        keys: &'s dyn KeyStore,
    ) -> impl Iterator<Item = &'s str> + 's {
        let sigs = signatures.and_then(Value::as_object);
        self.servers().into_iter().filter(move |server| {
            let Some(of_server) = sigs.and_then(|s| s.get(*server)).and_then(Value::as_object) else { return false };
            !of_server.keys().any(|key_id| {
                keys.verify_key(server, key_id).is_some_and(|k| {
                    !rules.enforce_key_validity || k.valid_until_ts.is_none_or(|v| v >= origin_server_ts)
                })
            })
        })
    }
}

/// Whether `keys` holds a key for every required signer that signed the
/// raw PDU `raw`, read without [`parse_pdu`] (no event ID, no signing
/// bytes: a fetcher asks this of every PDU before ingesting it). `false`
/// when a key is missing, and also when the PDU does not read as an object
/// with a string `sender` and `type` and an integer `origin_server_ts`:
/// then [`signers_missing_keys`] after [`parse_pdu`] says what is missing
/// or why the PDU will be dropped. When `true`, that would find nothing
/// missing.
pub fn raw_pdu_has_keys(raw: &str, rules: &RoomVersionRules, keys: &dyn KeyStore) -> bool {
    use std::borrow::Cow;
    /// The fields the signers depend on; the rest is skipped unread, and
    /// `content` is parsed only for a membership (a repeated field, like
    /// any irregularity, makes this `false`: the full parse then decides).
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        sender: Cow<'a, str>,
        #[serde(rename = "type", borrow)]
        event_type: Cow<'a, str>,
        origin_server_ts: serde_json::Number,
        #[serde(borrow)]
        content: Option<&'a serde_json::value::RawValue>,
        signatures: Option<Value>,
    }
    // (A struct would also read from a JSON array, field by field.)
    if raw.len() > crate::pdu::MAX_RAW_PDU_BYTES || !raw.trim_start().starts_with('{') {
        return false;
    }
    let Ok(p) = serde_json::from_str::<Peek<'_>>(raw) else { return false };
    let Some(ts) = p.origin_server_ts.as_i64() else { return false };
    let content: Option<Value> = match (&*p.event_type, p.content) {
        ("m.room.member", Some(c)) => match serde_json::from_str(c.get()) {
            Ok(v) => Some(v),
            Err(_) => return false,
        },
        _ => None,
    };
    match Signers::of_fields(&p.sender, &p.event_type, content.as_ref().and_then(Value::as_object), rules) {
        Ok(signers) => signers.missing_keys(p.signatures.as_ref(), ts, rules, keys).next().is_none(),
        Err(_) => false,
    }
}

/// A PDU parsed and signature-checked ahead of [`Room::ingest_prepared`].
#[derive(Debug)]
pub struct PreparedPdu {
    pub(crate) parsed: Option<ParsedPdu>,
    pub(crate) verdict: Result<(), String>,
}

impl PreparedPdu {
    /// The signature verdict.
    pub fn verdict(&self) -> &Result<(), String> {
        &self.verdict
    }
}

/// Parses PDUs and checks their signatures in one batch (see
/// [`verify_batch_signatures`]), for [`Room::ingest_prepared`].
pub fn prepare_batch(raws: &[&str], rules: &RoomVersionRules, keys: &dyn KeyStore) -> Vec<PreparedPdu> {
    let (parsed, verdicts) = batch_verify(raws, rules, keys);
    parsed.into_iter().zip(verdicts).map(|(parsed, verdict)| PreparedPdu { parsed, verdict }).collect()
}

/// How many signatures are checked together by [`verify_batch_signatures`].
/// 32 rather than 16 since each signer's key is one term of the batch
/// (`ed25519_batch`): the wasm replay of a 5,000-event room 5 % faster, the
/// native replay of a 50,000-event room the same (docs/benchmarks.md); 64
/// was slower natively (its parsed PDUs and curve tables outgrow the caches).
pub const SIGNATURE_BATCH: usize = 32;

/// Checks the signatures of many PDUs at once, for [`Verification::Precomputed`]:
/// one ed25519 batch verification (about three times as fast per signature
/// as one by one; each signer's key once in it, see `ed25519_batch`), then,
/// only if the batch fails, halves of it until the bad signatures are found. The
/// verdicts equal [`verify_pdu_signatures`]'s: batch verification is
/// followed by the checks `verify_strict` adds (no weak keys, no small-order
/// `R`).
pub fn verify_batch_signatures(
    raws: &[&str],
    rules: &RoomVersionRules,
    keys: &dyn KeyStore,
) -> Vec<Result<(), String>> {
    batch_verify(raws, rules, keys).1
}

#[allow(clippy::type_complexity)]
fn batch_verify(
    raws: &[&str],
    rules: &RoomVersionRules,
    keys: &dyn KeyStore,
) -> (Vec<Option<ParsedPdu>>, Vec<Result<(), String>>) {
    use ed25519_dalek::{Signature, VerifyingKey};
    struct Job {
        pdu: usize,
        key: VerifyingKey,
        sig: Signature,
    }
    let mut verdicts: Vec<Result<(), String>> = vec![Ok(()); raws.len()];
    let mut parsed: Vec<Option<ParsedPdu>> = Vec::with_capacity(raws.len());
    let mut jobs: Vec<Job> = Vec::new();
    for (i, raw) in raws.iter().enumerate() {
        let pdu = match parse_pdu(raw, rules) {
            Ok(p) => p,
            Err(_) => {
                parsed.push(None);
                continue;
            }
        };
        match Signers::of(&pdu, rules).map_err(str::to_owned).and_then(|s| s.jobs(&pdu, rules, keys)) {
            Ok(found) => jobs.extend(found.into_iter().map(|(key, sig)| Job { pdu: i, key, sig })),
            Err(reason) => verdicts[i] = Err(reason),
        }
        parsed.push(Some(pdu));
    }
    let messages: Vec<&[u8]> = jobs
        .iter()
        .map(|j| parsed[j.pdu].as_ref().expect("jobs come from parsed PDUs").signing_bytes.as_bytes())
        .collect();
    // Batch-verify; a failing range is halved until the bad signatures are
    // found one by one (an explicit stack, at most 2·log2(n) ranges deep).
    let mut bad_pdus: Vec<usize> = Vec::new();
    let mut ranges: Vec<(usize, usize)> = if jobs.is_empty() { Vec::new() } else { vec![(0, jobs.len())] };
    while let Some((a, b)) = ranges.pop() {
        let ok = if b - a == 1 {
            jobs[a].key.verify_strict(messages[a], &jobs[a].sig).is_ok()
        } else {
            let sigs: Vec<Signature> = jobs[a..b].iter().map(|j| j.sig).collect();
            let vkeys: Vec<VerifyingKey> = jobs[a..b].iter().map(|j| j.key).collect();
            ed25519_batch::verify_batch(&messages[a..b], &sigs, &vkeys)
                && jobs[a..b].iter().all(|j| !r_is_small_order(&j.sig))
                && no_weak_key(&vkeys)
        };
        if !ok {
            if b - a == 1 {
                bad_pdus.push(jobs[a].pdu);
            } else {
                let mid = a + (b - a) / 2;
                ranges.push((a, mid));
                ranges.push((mid, b));
            }
        }
    }
    for i in bad_pdus {
        if verdicts[i].is_ok() {
            if let Some(pdu) = &parsed[i] {
                // The precise reason, as a one-by-one check gives it.
                verdicts[i] = Signers::of(pdu, rules).map_err(str::to_owned).and_then(|s| s.verify(pdu, rules, keys));
            }
        }
    }
    (parsed, verdicts)
}

/// Whether none of `keys` is weak (of small order, which `verify_strict`
/// refuses), each distinct key checked once: a batch holds a few signers'
/// keys many times, and each check is three doublings and a comparison.
fn no_weak_key(keys: &[ed25519_dalek::VerifyingKey]) -> bool {
    let mut checked: Vec<&[u8; 32]> = Vec::new();
    keys.iter().all(|k| {
        if checked.contains(&k.as_bytes()) {
            return true;
        }
        checked.push(k.as_bytes());
        !k.is_weak()
    })
}

/// Whether `R` of a signature that passed batch verification (so `R`
/// decompresses) is a point of small order, which `verify_strict` refuses.
///
/// By its encoding rather than by decompressing it again (a square root,
/// about a tenth of a replay): a point of small order is one of the eight
/// points of order dividing 8, whose `y` coordinates are 0, 1, −1 and ±y₈;
/// an encoding is `y` (or `y + p` when that fits in 255 bits, i.e. for `y`
/// 0 and 1) with the sign of `x` in the top bit, and both signs of each of
/// those `y` are points of small order. So an `R` that decompresses is of
/// small order exactly when its low 255 bits are one of [`SMALL_ORDER_Y`]
/// (libsodium's blocklist; the tests check it against curve25519-dalek).
fn r_is_small_order(sig: &ed25519_dalek::Signature) -> bool {
    let mut y = *sig.r_bytes();
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

/// The `y` encodings (sign bit cleared) of the points of order 1, 2, 4 and 8.
const SMALL_ORDER_Y: [[u8; 32]; 7] = {
    const fn ff_then(first: u8) -> [u8; 32] {
        let mut b = [0xff; 32];
        b[0] = first;
        b[31] = 0x7f;
        b
    }
    let mut one = [0u8; 32];
    one[0] = 1;
    [
        [0; 32], // y = 0: order 4
        one,     // y = 1: the identity
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
            0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
        ], // y₈: order 8
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
            0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
        ], // −y₈: order 8
        ff_then(0xec), // p − 1 = −1: order 2
        ff_then(0xed), // p (non-canonical 0): order 4
        ff_then(0xee), // p + 1 (non-canonical 1): the identity
    ]
};

/// Checks a PDU's signatures on its own (no room needed), for verifying
/// ahead of [`Room::ingest`] with [`Verification::Precomputed`]. A PDU that
/// does not parse passes here: ingesting it drops it at the format check.
pub fn verify_pdu_signatures(raw: &str, rules: &RoomVersionRules, keys: &dyn KeyStore) -> Result<(), String> {
    let Ok(pdu) = parse_pdu(raw, rules) else { return Ok(()) };
    match Signers::of(&pdu, rules) {
        Ok(signers) => signers.verify(&pdu, rules, keys),
        Err(_) => Ok(()),
    }
}

/// Checks that every server in `servers` signed the event with at least one
/// known key and that every known key's signature verifies.
fn check_signatures(
    json: &Map<String, Value>,
    servers: &[&str],
    signing_bytes: &[u8],
    origin_server_ts: i64,
    rules: &RoomVersionRules,
    keys: &dyn KeyStore,
) -> Result<(), String> {
    for server in servers {
        let Some(sigs) = json.get("signatures").and_then(|s| s.get(*server)).and_then(Value::as_object) else {
            return Err(format!("not signed by {server}"));
        };
        let mut verified = false;
        for (key_id, sig) in sigs {
            let Some(key) = keys.verify_key(server, key_id) else {
                continue;
            };
            if rules.enforce_key_validity && key.valid_until_ts.is_some_and(|v| v < origin_server_ts) {
                continue;
            }
            let sig = sig.as_str().unwrap_or_default();
            if !keys.verify_signature(&key.key, signing_bytes, sig) {
                return Err(format!("invalid signature for {server} with {key_id}"));
            }
            verified = true;
        }
        if !verified {
            let ids: Vec<&String> = sigs.keys().collect();
            return Err(format!("no known key for {server} among {ids:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::traits::Identity;
    use serde_json::json;

    fn with_sign(y: &[u8; 32], sign: bool) -> [u8; 32] {
        let mut b = *y;
        b[31] |= u8::from(sign) << 7;
        b
    }

    fn sig_with_r(r: [u8; 32]) -> ed25519_dalek::Signature {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&r);
        ed25519_dalek::Signature::from_bytes(&b)
    }

    /// The light check agrees with the full one: on the demo room's PDUs
    /// with every, some and none of the servers' keys, and on PDUs that
    /// only the full parse refuses (it then says `false`).
    #[test]
    fn raw_pdu_has_keys_agrees_with_signers_missing_keys() {
        let room = crate::demo::demo_room(60);
        let rules = RoomVersionRules::supported(room["room_version"].as_str().unwrap()).unwrap();
        let servers: Vec<(&String, &Value)> = room["servers"].as_object().unwrap().iter().collect();
        let raws: Vec<String> = room["events"].as_array().unwrap().iter().map(|e| e["pdu"].to_string()).collect();
        let mut checked = (0, 0);
        for held in 0..=servers.len() {
            let mut keys = crate::signing::PinnedKeys::new();
            for (name, s) in &servers[..held] {
                for (id, b64) in s["verify_keys"].as_object().unwrap() {
                    keys.insert(name, id, b64.as_str().unwrap()).unwrap();
                }
            }
            for raw in &raws {
                let full = parse_pdu(raw, rules).map(|p| signers_missing_keys(&p, rules, &keys).unwrap().is_empty());
                let light = raw_pdu_has_keys(raw, rules, &keys);
                assert_eq!(light, full.unwrap(), "{raw}");
                checked.0 += usize::from(light);
                checked.1 += 1;
            }
        }
        assert!(checked.0 > 0 && checked.0 < checked.1, "{checked:?}");
        let keys = crate::signing::PinnedKeys::new();
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"sender":"@a:b","type":"x"}"#,
            r#"{"sender":"nobody","type":"x","origin_server_ts":1}"#,
        ] {
            assert!(!raw_pdu_has_keys(bad, rules, &keys), "{bad}");
        }
    }

    /// The blocklist is exactly the encodings of the points of small order.
    #[test]
    fn small_order_encodings_match_curve25519_dalek() {
        // Every listed encoding, with either sign, is a point of small order.
        for y in &SMALL_ORDER_Y {
            for sign in [false, true] {
                let p = CompressedEdwardsY(with_sign(y, sign)).decompress().expect("decompresses");
                assert!(p.is_small_order(), "{y:02x?}");
            }
        }
        // The eight points of order dividing 8 (multiples of one of order 8)
        // all have their y among them.
        let p8 = CompressedEdwardsY(SMALL_ORDER_Y[2]).decompress().expect("decompresses");
        let times = |p: EdwardsPoint, n: u8| (0..n).fold(EdwardsPoint::identity(), |acc, _| acc + p);
        assert!(times(p8, 8) == EdwardsPoint::identity() && times(p8, 4) != EdwardsPoint::identity(), "order 8");
        let mut torsion: Vec<EdwardsPoint> = vec![EdwardsPoint::identity()];
        for _ in 1..8 {
            torsion.push(torsion.last().expect("one") + p8);
        }
        for (i, p) in torsion.iter().enumerate() {
            assert!(torsion[..i].iter().all(|q| q != p), "eight distinct points");
            let mut y = p.compress().to_bytes();
            y[31] &= 0x7f;
            assert!(SMALL_ORDER_Y.contains(&y), "{y:02x?} listed");
            assert!(r_is_small_order(&sig_with_r(p.compress().to_bytes())));
        }
    }

    /// On any R that decompresses, the encoding test agrees with
    /// decompressing and multiplying by the cofactor.
    #[test]
    fn small_order_test_agrees_on_random_and_real_points() {
        let mut x: u64 = 0x243F_6A88_85A3_08D3;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut checked = 0;
        for i in 0..4000u64 {
            let mut r = [0u8; 32];
            for c in r.chunks_mut(8) {
                c.copy_from_slice(&next().to_le_bytes());
            }
            if i % 2 == 0 {
                // A real point: a multiple of the base point, plus a torsion part now and then.
                let s = curve25519_dalek::Scalar::from_bytes_mod_order(r);
                let mut p = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * s;
                if i % 6 == 0 {
                    p += CompressedEdwardsY(SMALL_ORDER_Y[(i / 6) as usize % 7]).decompress().expect("small");
                }
                r = p.compress().to_bytes();
            }
            if let Some(p) = CompressedEdwardsY(r).decompress() {
                checked += 1;
                assert_eq!(r_is_small_order(&sig_with_r(r)), p.is_small_order(), "{r:02x?}");
            }
        }
        assert!(checked > 2500, "{checked} points checked");
    }

    /// A weak key (of small order) verifies any signature `(s·B, s)` on
    /// any message under the batch equation: the batch check must still
    /// refuse it, as `verify_strict` does, whether the weak key comes first
    /// in its batch or after good keys, once or many times.
    #[test]
    fn batches_refuse_weak_keys_as_one_by_one_does() {
        use crate::signing::{encode_base64, PinnedKeys, PublicKey};
        let room = crate::demo::demo_room(40);
        let rules = RoomVersionRules::supported(room["room_version"].as_str().unwrap()).unwrap();
        let mut keys = PinnedKeys::new();
        for (name, s) in room["servers"].as_object().unwrap() {
            for (id, b64) in s["verify_keys"].as_object().unwrap() {
                keys.insert(name, id, b64.as_str().unwrap()).unwrap();
            }
        }
        let weak = ed25519_dalek::VerifyingKey::from_bytes(&EdwardsPoint::identity().compress().to_bytes())
            .expect("decompresses");
        assert!(weak.is_weak());
        keys.insert_key("weak.example", "ed25519:w", PublicKey { key: weak, valid_until_ts: None });
        let good: Vec<String> = room["events"].as_array().unwrap().iter().map(|e| e["pdu"].to_string()).collect();
        let forged = |n: u64| {
            let mut pdu: Value = serde_json::from_str(&good[good.len() - 1]).unwrap();
            pdu["sender"] = json!("@w:weak.example");
            pdu["content"] = json!({"body": format!("forged {n}"), "msgtype": "m.text"});
            let s = curve25519_dalek::Scalar::from(n + 7);
            let r = (curve25519_dalek::constants::ED25519_BASEPOINT_POINT * s).compress();
            let sig = [r.to_bytes(), s.to_bytes()].concat();
            pdu["signatures"] = json!({"weak.example": {"ed25519:w": encode_base64(&sig)}});
            pdu.to_string()
        };
        let w: Vec<String> = (0..3).map(forged).collect();
        for batch in [
            vec![&w[0], &good[3], &good[4]],
            vec![&good[3], &good[4], &w[0]],
            vec![&good[3], &w[0], &w[1], &good[4], &w[2], &good[5]],
            vec![&w[0], &w[1], &w[2]],
        ] {
            let raws: Vec<&str> = batch.iter().map(|r| r.as_str()).collect();
            let batched = verify_batch_signatures(&raws, rules, &keys);
            for (raw, verdict) in raws.iter().zip(&batched) {
                let one = verify_pdu_signatures(raw, rules, &keys);
                assert_eq!(verdict, &one, "{raw}");
                assert_eq!(verdict.is_ok(), !raw.contains("weak.example"), "{raw}: {verdict:?}");
            }
        }
    }
}
