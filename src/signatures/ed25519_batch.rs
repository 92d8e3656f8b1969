//! ed25519 batch verification with each key's terms summed.
//!
//! A batch of `n` signatures `(R_i, s_i)` by keys `A_i` on messages `M_i`
//! holds when, for random 128-bit `z_i`,
//!
//! ```text
//! −(∑ z_i·s_i)·B + ∑ z_i·R_i + ∑ (z_i·H(R_i‖A_i‖M_i))·A_i = 0
//! ```
//!
//! which `ed25519_dalek::verify_batch` computes as one multiscalar
//! multiplication over `2n + 1` points. A room's PDUs are signed by few
//! servers, so most `A_i` of a batch are the same few keys: here the
//! coefficients of equal keys are added first (`∑_{i: A_i = A} z_i·h_i`),
//! and the multiplication is over `n + 1 + (distinct keys)` points. It is the
//! same sum, with the same `z_i` (drawn as `ed25519_dalek` draws them: a
//! merlin transcript of every `H(R‖A‖M)` and `s`, finalized without outside
//! randomness), so the verdict is `verify_batch`'s, bit for bit (the tests
//! compare them on valid and broken batches).

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use merlin::Transcript;
use sha2::{Digest, Sha512};

/// Whether every signature of the batch verifies under the batch equation:
/// exactly `ed25519_dalek::verify_batch(messages, signatures, keys).is_ok()`.
/// The three slices are of equal length (`false` otherwise).
pub(super) fn verify_batch(messages: &[&[u8]], signatures: &[Signature], keys: &[VerifyingKey]) -> bool {
    let n = signatures.len();
    if messages.len() != n || keys.len() != n {
        return false;
    }
    // 1. H(R‖A‖M) for each signature, and the transcript the z_i come from.
    let hrams: Vec<[u8; 64]> = (0..n)
        .map(|i| {
            let mut h = Sha512::new();
            h.update(signatures[i].r_bytes());
            h.update(keys[i].as_bytes());
            h.update(messages[i]);
            h.finalize().into()
        })
        .collect();
    let mut transcript = Transcript::new(b"ed25519 batch verification");
    for hram in &hrams {
        transcript.append_message(b"hram", hram);
    }
    for sig in signatures {
        transcript.append_message(b"sig.s", sig.s_bytes());
    }
    let mut rng = transcript.build_rng().finalize(&mut ZeroRng);
    // 2. Each s must be a canonical scalar, each R a curve point.
    let mut scalars: Vec<Scalar> = Vec::with_capacity(2 * n + 1);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(2 * n + 1);
    scalars.push(Scalar::ZERO);
    points.push(ED25519_BASEPOINT_POINT);
    let mut b_coefficient = Scalar::ZERO;
    // One term per distinct key: its encoding, coefficient and point.
    let mut key_terms: Vec<(&[u8; 32], Scalar, EdwardsPoint)> = Vec::new();
    for ((sig, hram), key) in signatures.iter().zip(&hrams).zip(keys) {
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*sig.s_bytes())) else { return false };
        let Some(r) = CompressedEdwardsY(*sig.r_bytes()).decompress() else { return false };
        // 3. z_i: the transcript RNG's i-th draw, as verify_batch's (which
        // checks every s first: the draws do not depend on that).
        let z = Scalar::from(next_u128(&mut rng));
        b_coefficient += z * s;
        scalars.push(z);
        points.push(r);
        // 4. z_i·h_i added to its key's coefficient.
        let zh = z * Scalar::from_bytes_mod_order_wide(hram);
        match key_terms.iter_mut().find(|(bytes, ..)| *bytes == key.as_bytes()) {
            Some((_, coefficient, _)) => *coefficient += zh,
            None => key_terms.push((key.as_bytes(), zh, key.to_edwards())),
        }
    }
    scalars[0] = -b_coefficient;
    for (_, coefficient, point) in key_terms {
        scalars.push(coefficient);
        points.push(point);
    }
    // 5. The sum is the identity.
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points).is_identity()
}

/// The z_i drawn from the transcript's RNG.
fn next_u128(rng: &mut merlin::TranscriptRng) -> u128 {
    use rand_core::RngCore;
    let mut buf = [0u8; 16];
    rng.fill_bytes(&mut buf);
    u128::from_le_bytes(buf)
}

/// No outside randomness: merlin's RNG is then a function of the
/// transcript alone (what `ed25519_dalek` finalizes it with).
struct ZeroRng;

impl rand_core::RngCore for ZeroRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    /// Leaves the bytes as they are (merlin zeroes them first).
    fn fill_bytes(&mut self, _dest: &mut [u8]) {}

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for ZeroRng {}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes<const N: usize>(&mut self) -> [u8; N] {
            let mut b = [0u8; N];
            for c in b.chunks_mut(8) {
                let n = c.len();
                c.copy_from_slice(&self.next().to_le_bytes()[..n]);
            }
            b
        }
    }

    /// Valid batches, and batches with one or two signatures broken in each
    /// way a signature can be, over one to five keys: the verdict is
    /// `ed25519_dalek::verify_batch`'s every time.
    #[test]
    fn verdicts_equal_ed25519_dalek_verify_batch() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let signers: Vec<SigningKey> = (0..5).map(|_| SigningKey::from_bytes(&rng.bytes())).collect();
        let mut verdicts = [0usize; 2];
        for round in 0..300 {
            let n = 1 + (rng.next() % 40) as usize;
            let distinct = 1 + (rng.next() % signers.len() as u64) as usize;
            let messages: Vec<Vec<u8>> =
                (0..n).map(|i| format!("message {round} {i} {}", rng.next()).into_bytes()).collect();
            let by: Vec<usize> = (0..n).map(|_| (rng.next() % distinct as u64) as usize).collect();
            let mut sigs: Vec<Signature> = (0..n).map(|i| signers[by[i]].sign(&messages[i])).collect();
            let mut keys: Vec<VerifyingKey> = by.iter().map(|&k| signers[k].verifying_key()).collect();
            let mut messages = messages;
            for _ in 0..round % 3 {
                let i = (rng.next() % n as u64) as usize;
                let mut b = sigs[i].to_bytes();
                match rng.next() % 6 {
                    0 => b[(rng.next() % 64) as usize] ^= 1 << (rng.next() % 8), // any bit
                    1 => b[63] |= 0xf0,                                          // s not canonical
                    2 => b[..32].copy_from_slice(&rng.bytes::<32>()),            // R anything (may not decompress)
                    3 => messages[i].push(b'!'),                                 // another message
                    4 => keys[i] = signers[(by[i] + 1) % signers.len()].verifying_key(), // another key
                    _ => {
                        // The right signature of another batch member: swapped.
                        let j = (rng.next() % n as u64) as usize;
                        sigs.swap(i, j);
                        b = sigs[i].to_bytes();
                    }
                }
                sigs[i] = Signature::from_bytes(&b);
            }
            let m: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let theirs = ed25519_dalek::verify_batch(&m, &sigs, &keys).is_ok();
            assert_eq!(verify_batch(&m, &sigs, &keys), theirs, "round {round}");
            verdicts[usize::from(theirs)] += 1;
        }
        assert!(verdicts[0] > 100 && verdicts[1] > 100, "{verdicts:?}");
        assert!(!verify_batch(&[b"a"], &[], &[]), "lengths differ");
    }
}
